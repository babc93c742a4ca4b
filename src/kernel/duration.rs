//! Durations in handler files: an integer and a unit (`500ms`, `30s`, `5m`, `1h`, `2d`).

use std::time::Duration;

/// Parses `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`. No spaces, no fractions and no
/// compound forms (`1h30m`): one spelling per duration keeps handler files easy to compare.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let expected = || format!("expected a duration like \"30s\" or \"5m\", found {s:?}");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(expected)?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(expected());
    }
    let n: u64 = digits.parse().map_err(|_| expected())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(expected()),
    };
    let millis = n.checked_mul(millis_per_unit).ok_or_else(expected)?;
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn accepts_every_unit() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("2d", Duration::from_secs(172_800)),
            ("0s", Duration::ZERO),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_duration(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn rejects_other_spellings() {
        for bad in [
            "",
            "30",
            "s",
            "soon",
            "30 s",
            "1.5s",
            "-5s",
            "1h30m",
            "5M",
            "99999999999999999999d",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.starts_with("expected a duration like \"30s\""),
                "{bad}: {err}"
            );
        }
    }
}
