//! Event kind patterns (`on = [...]`): an exact kind such as `planhat.nps.submitted`, or a prefix
//! ending in a `.*` wildcard such as `happyfox.ticket.*`.

use std::fmt;

/// A validated pattern. Segments are `[a-z0-9_]+`; at least two segments, the wildcard counting
/// as one (so `happyfox.*` is allowed and a bare `*` is not).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KindPattern {
    raw: String,
    /// Set for wildcard patterns: the literal part including its trailing dot (`happyfox.ticket.`).
    prefix: Option<String>,
}

impl KindPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let expected = || {
            format!(
                "expected an event kind of dot-separated lowercase segments [a-z0-9_]+ \
                 (at least two, optionally ending in \".*\") like \"happyfox.ticket.created\" \
                 or \"happyfox.ticket.*\", found {s:?}"
            )
        };
        let (literal, wildcard) = match s.strip_suffix(".*") {
            Some(literal) => (literal, true),
            None => (s, false),
        };
        let segments: Vec<&str> = literal.split('.').collect();
        let segments_ok = segments.iter().all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        if !segments_ok || segments.len() + usize::from(wildcard) < 2 {
            return Err(expected());
        }
        Ok(Self {
            raw: s.to_string(),
            prefix: wildcard.then(|| format!("{literal}.")),
        })
    }

    /// A wildcard matches one or more trailing segments: `happyfox.ticket.*` covers
    /// `happyfox.ticket.created` and deeper kinds like `happyfox.ticket.note.added`, because
    /// sources differ in how deep they name things, but never `happyfox.ticket` itself.
    pub fn matches(&self, kind: &str) -> bool {
        match &self.prefix {
            None => self.raw == kind,
            Some(prefix) => kind.len() > prefix.len() && kind.starts_with(prefix.as_str()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for KindPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::KindPattern;

    #[test]
    fn wildcard_and_exact_matching() {
        let cases = [
            ("happyfox.ticket.*", "happyfox.ticket.created", true),
            ("happyfox.ticket.*", "happyfox.ticket.note.added", true),
            ("happyfox.ticket.*", "happyfox.tickets.created", false),
            ("happyfox.ticket.*", "happyfox.ticket", false),
            ("happyfox.ticket.*", "happyfox.ticket.", false),
            ("happyfox.ticket.*", "planhat.nps.submitted", false),
            ("planhat.nps.submitted", "planhat.nps.submitted", true),
            ("planhat.nps.submitted", "planhat.nps.submitted.v2", false),
            ("happyfox.*", "happyfox.ticket.created", true),
        ];
        for (pattern, kind, expected) in cases {
            let p = KindPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(kind), expected, "{pattern} vs {kind}");
        }
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        for bad in [
            "",
            "*",
            "happyfox",
            "Happyfox.ticket",
            "happyfox..ticket",
            "happyfox.ticket.",
            "happyfox.*.created",
            "happyfox.ticket.**",
            ".happyfox.ticket",
            "happy fox.ticket",
        ] {
            assert!(
                KindPattern::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
