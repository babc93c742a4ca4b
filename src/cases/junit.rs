//! `hookwise test --junit FILE`: the reports as JUnit XML, one `<testsuite>` per handler, the
//! form CI systems (GitLab, GitHub actions' reporters, Jenkins) read.

use super::Report;

pub fn render(reports: &[Report]) -> String {
    let failures = reports.iter().filter(|r| !r.problems.is_empty()).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"hookwise test\" tests=\"{}\" failures=\"{failures}\">\n",
        reports.len()
    ));
    let mut handlers: Vec<&str> = Vec::new();
    for report in reports {
        if !handlers.contains(&report.handler.as_str()) {
            handlers.push(&report.handler);
        }
    }
    for handler in handlers {
        let suite: Vec<&Report> = reports.iter().filter(|r| r.handler == handler).collect();
        let failed = suite.iter().filter(|r| !r.problems.is_empty()).count();
        let time: f64 = suite.iter().map(|r| r.seconds).sum();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" time=\"{time:.3}\">\n",
            escape(handler),
            suite.len()
        ));
        for report in suite {
            out.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" time=\"{:.3}\"",
                escape(&report.name),
                escape(handler),
                escape(&report.path.display().to_string()),
                report.seconds
            ));
            if report.problems.is_empty() {
                out.push_str("/>\n");
                continue;
            }
            let first = report.problems[0].lines().next().unwrap_or_default();
            out.push_str(&format!(
                ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                escape(first),
                escape(&report.problems.join("\n"))
            ));
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Text for an XML attribute or element; control characters XML 1.0 cannot carry are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn report(handler: &str, name: &str, problems: &[&str]) -> Report {
        Report {
            id: format!("{handler}/{name}"),
            handler: handler.into(),
            name: name.into(),
            path: PathBuf::from(format!("handlers/tests/{handler}/{name}.toml")),
            problems: problems.iter().map(|p| p.to_string()).collect(),
            seconds: 0.25,
            note: None,
        }
    }

    #[test]
    fn one_suite_per_handler_with_escaped_failures() {
        let xml = render(&[
            report("triage", "new", &[]),
            report("triage", "refund", &["expected <1> write\n  detail & more"]),
            report("nps", "detractor", &[]),
        ]);
        assert!(xml.contains("<testsuites name=\"hookwise test\" tests=\"3\" failures=\"1\">"));
        assert!(
            xml.contains("<testsuite name=\"triage\" tests=\"2\" failures=\"1\" time=\"0.500\">")
        );
        assert!(xml.contains("<testcase name=\"new\" classname=\"triage\" file=\"handlers/tests/triage/new.toml\" time=\"0.250\"/>"));
        assert!(xml.contains("<failure message=\"expected &lt;1&gt; write\">expected &lt;1&gt; write\n  detail &amp; more</failure>"));
        assert!(xml.contains("<testsuite name=\"nps\" tests=\"1\" failures=\"0\""));
    }
}
