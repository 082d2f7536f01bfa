//! Durations as people type them (`90`, `90s`, `20m`, `1h30m`) and as they read them.

use std::time::Duration;

/// The longest wait anyone means; larger numbers are typos.
const LONGEST: Duration = Duration::from_secs(366 * 24 * 3600);

/// Reads a positive duration: plain seconds (`90`, `0.5`) or numbers with units `ms`, `s`,
/// `m`, `h` and `d`, alone or strung together (`20m`, `1h30m`, `500ms`). For clap.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let total = match text.parse::<f64>() {
        Ok(seconds) => seconds,
        Err(_) => seconds_with_units(text).ok_or_else(|| {
            format!("`{text}` is not a duration: give seconds (90) or use s, m or h (90s, 20m, 1h)")
        })?,
    };
    if !total.is_finite() {
        return Err(format!("`{text}` is not a number of seconds, e.g. 90s"));
    }
    if total < 0.001 {
        return Err(format!("`{text}` must be at least a millisecond, e.g. 90s"));
    }
    let duration = Duration::from_secs_f64(total.min(LONGEST.as_secs_f64() + 1.0));
    if duration > LONGEST {
        return Err(format!("`{text}` is longer than a year: did you mean 1h?"));
    }
    Ok(duration)
}

/// Adds up `<number><unit>` parts; `None` if any part is malformed.
fn seconds_with_units(text: &str) -> Option<f64> {
    let mut rest = text;
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit.to_ascii_lowercase().as_str() {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        total += number.parse::<f64>().ok()? * scale;
        rest = tail;
    }
    Some(total)
}

/// A short human form: `3.4s`, `2m 05s`, `1h 02m`.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{:.1}s", duration.as_secs_f64()),
        60..3600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_seconds_and_units() {
        let cases = [
            ("90", 90.0),
            ("0.5", 0.5),
            ("90s", 90.0),
            ("20m", 1200.0),
            ("1h", 3600.0),
            ("1h30m", 5400.0),
            ("500ms", 0.5),
            (" 2M ", 120.0),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs_f64(seconds)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_nonsense_zero_and_negative() {
        for text in [
            "", "5x", "s", "1h 30m", "-3", "0", "0s", "nan", "inf", "1e30", "1.2.3s",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_duration(Duration::from_millis(3400)), "3.4s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m 05s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h 02m");
    }
}
