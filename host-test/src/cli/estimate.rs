//! What a video will cost: Runflow bills HeyGen Video Agent by the second of video.

use serde_json::{json, Value};

/// The price per second of generated video, in thousandths of a US dollar, so that every
/// sum is exact.
const MILLIDOLLARS_PER_SECOND: u64 = 34;

/// Reads `--seconds`: a whole number of seconds of video, at least one. For clap.
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    let text = text.trim();
    // Whole seconds, or a length written as elsewhere in the tool (`30s`, `2m`, `1m30s`).
    let seconds = match text.parse::<u64>() {
        Ok(seconds) => seconds,
        Err(_) if text.ends_with(|c: char| c.is_ascii_alphabetic()) => {
            let length = super::duration::parse_duration(text).map_err(|_| not_a_length(text))?;
            if length.subsec_nanos() != 0 {
                return Err(format!(
                    "`{text}` is not a whole number of seconds: Runflow bills whole seconds, \
                     e.g. --seconds 30"
                ));
            }
            length.as_secs()
        }
        Err(_) => return Err(not_a_length(text)),
    };
    match seconds {
        0 => Err("a video lasts at least 1 second, e.g. --seconds 30".into()),
        1..=1_000_000 => Ok(seconds),
        _ => Err(format!(
            "{text} is not a video length: give at most 1000000 seconds"
        )),
    }
}

fn not_a_length(text: &str) -> String {
    format!("`{text}` is not a video length: give whole seconds or a length, e.g. 30, 30s or 2m")
}

/// The price of `seconds` of video, in thousandths of a dollar.
fn price(seconds: u64) -> u64 {
    seconds * MILLIDOLLARS_PER_SECOND
}

/// Dollars with at least two decimals and no rounding: `1.02`, `1.054`, `0.034`.
fn dollars(millidollars: u64) -> String {
    let (whole, thousandths) = (millidollars / 1000, millidollars % 1000);
    if thousandths % 10 == 0 {
        format!("{whole}.{:02}", thousandths / 10)
    } else {
        format!("{whole}.{thousandths:03}")
    }
}

/// The rule and its result on one line: `30 s × $0.034/s = $1.02`.
pub fn rule(seconds: u64) -> String {
    format!(
        "{seconds} s × ${}/s = ${}",
        dollars(MILLIDOLLARS_PER_SECOND),
        dollars(price(seconds))
    )
}

/// The estimate as one JSON object.
pub fn estimate_json(seconds: u64) -> Value {
    json!({
        "seconds": seconds,
        "price_per_second_usd": MILLIDOLLARS_PER_SECOND as f64 / 1000.0,
        "estimate_usd": price(seconds) as f64 / 1000.0,
        "currency": "USD",
        "rule": rule(seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_the_rule_and_an_exact_price() {
        assert_eq!(rule(30), "30 s × $0.034/s = $1.02");
        assert_eq!(rule(1), "1 s × $0.034/s = $0.034");
        assert_eq!(rule(31), "31 s × $0.034/s = $1.054");
        assert_eq!(rule(600), "600 s × $0.034/s = $20.40");
    }

    #[test]
    fn agrees_with_the_emulator_price() {
        let per_second = MILLIDOLLARS_PER_SECOND as f64 / 1000.0;
        assert_eq!(per_second, host_test::emulator::PRICE_PER_SECOND);
        assert_eq!(estimate_json(30)["estimate_usd"], json!(1.02));
    }

    #[test]
    fn refuses_what_is_not_a_length() {
        for text in [
            "0", "-1", "abc", "1.5", "", "2000000", "0s", "1.5s", "500ms", "30x",
        ] {
            assert!(parse_seconds(text).is_err(), "{text}");
        }
        assert_eq!(parse_seconds(" 45 "), Ok(45));
        assert_eq!(parse_seconds("30s"), Ok(30));
        assert_eq!(parse_seconds("2m"), Ok(120));
        assert_eq!(parse_seconds("1m30s"), Ok(90));
    }
}
