//! Settings read from the component's environment at every call.

use std::time::Duration;

use crate::wit::RunError;

/// The variable that holds the Runflow API key.
pub const API_KEY_VAR: &str = "RUNFLOW_API_KEY";
/// The variable that overrides the API's base URL.
pub const BASE_URL_VAR: &str = "RUNFLOW_BASE_URL";
/// Runflow's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.runflow.io";

/// Total attempts (first try included) for a retryable request.
pub const MAX_ATTEMPTS_VAR: &str = "RUNFLOW_RETRY_MAX_ATTEMPTS";
/// First backoff step in milliseconds; each later step doubles it.
pub const BASE_DELAY_VAR: &str = "RUNFLOW_RETRY_BASE_DELAY_MS";
/// Longest single wait in milliseconds, also the cap on a server's `Retry-After`.
pub const MAX_DELAY_VAR: &str = "RUNFLOW_RETRY_MAX_DELAY_MS";
/// Longest total time in milliseconds that one call spends on attempts and waits.
pub const BUDGET_VAR: &str = "RUNFLOW_RETRY_BUDGET_MS";
/// Connect timeout in milliseconds for each request.
pub const CONNECT_TIMEOUT_VAR: &str = "RUNFLOW_CONNECT_TIMEOUT_MS";

/// How failed requests are retried. The defaults follow Runflow's advice: exponential
/// backoff with jitter from 1 s up to 32 s, at most 5 attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included; 1 disables retries.
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry; it doubles with each further retry.
    pub base_delay: Duration,
    /// The longest single wait, and the cap on a server's `Retry-After`.
    pub max_delay: Duration,
    /// No retry starts if it would end later than this after the call began.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(32),
            budget: Duration::from_secs(120),
        }
    }
}

/// Everything one call needs to know about where and how to reach Runflow.
#[derive(Clone, PartialEq)]
pub struct Settings {
    /// The API key, exactly as found in the environment.
    pub api_key: String,
    /// The base URL without a trailing slash, e.g. `https://api.runflow.io`.
    pub base_url: String,
    /// The retry rules.
    pub retry: RetryPolicy,
    /// How long to wait for a connection to open.
    pub connect_timeout: Duration,
}

// The key must never reach a log or an error, so Debug leaves it out.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("api_key", &"<hidden>")
            .field("base_url", &self.base_url)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, RunError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, which returns a variable's value if it is set.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, RunError> {
        let api_key = lookup(API_KEY_VAR).unwrap_or_default();
        if api_key.trim().is_empty() {
            return Err(bad_config(format!(
                "{API_KEY_VAR} is not set: give the component your Runflow API key in it"
            )));
        }
        // Only what HTTP forbids in a header value is refused; the key is otherwise opaque.
        if api_key.chars().any(|c| c.is_control()) {
            return Err(bad_config(format!(
                "{API_KEY_VAR} contains control characters, which no HTTP header may carry: \
                 set it to the key alone"
            )));
        }

        let base_url = match lookup(BASE_URL_VAR) {
            Some(url) if !url.trim().is_empty() => check_base_url(url.trim())?,
            _ => DEFAULT_BASE_URL.to_string(),
        };

        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            max_attempts: number(&lookup, MAX_ATTEMPTS_VAR, 1, 20)?
                .map_or(defaults.max_attempts, |n| n as u32),
            base_delay: millis(&lookup, BASE_DELAY_VAR, 1, 60_000)?.unwrap_or(defaults.base_delay),
            max_delay: millis(&lookup, MAX_DELAY_VAR, 1, 600_000)?.unwrap_or(defaults.max_delay),
            budget: millis(&lookup, BUDGET_VAR, 1, 3_600_000)?.unwrap_or(defaults.budget),
        };
        let connect_timeout =
            millis(&lookup, CONNECT_TIMEOUT_VAR, 1, 600_000)?.unwrap_or(Duration::from_secs(10));

        Ok(Self {
            api_key,
            base_url,
            retry,
            connect_timeout,
        })
    }
}

fn bad_config(message: String) -> RunError {
    RunError::PermanentBadConfiguration(message)
}

/// Accepts `http(s)://host[:port][/path]` and returns it without a trailing slash.
fn check_base_url(url: &str) -> Result<String, RunError> {
    // The scheme is case-insensitive; it is sent in lowercase.
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => ("https://", rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => ("http://", rest),
        _ => {
            return Err(bad_config(format!(
                "{BASE_URL_VAR} must start with https:// or http://, e.g. {DEFAULT_BASE_URL}"
            )))
        }
    };
    let url = format!("{scheme}{rest}");
    let url = url.as_str();
    // Before the host and port are read, which a query or fragment would run into.
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad_config(format!(
            "{BASE_URL_VAR} must be a plain URL without query, fragment or spaces, \
             e.g. {DEFAULT_BASE_URL}"
        )));
    }
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Err(bad_config(format!(
            "{BASE_URL_VAR} must name a host (without user info), e.g. {DEFAULT_BASE_URL}"
        )));
    }
    // A port is digits after the last colon outside an IPv6 literal's brackets.
    if let Some((_, port)) = host.rsplit_once(':').filter(|(_, p)| !p.contains(']')) {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad_config(format!(
                "{BASE_URL_VAR} has the port `{port}`, which is not a port number (1 to 65535)"
            )));
        }
    }
    let url = url.trim_end_matches('/');
    let path = &rest[host.len()..].trim_end_matches('/');
    if path.rsplit('/').next() == Some("v1") {
        return Err(bad_config(format!(
            "{BASE_URL_VAR} ends in the API version path; give the origin only (such as \
             {DEFAULT_BASE_URL}): `/v1/...` is added to every request"
        )));
    }
    Ok(url.to_string())
}

fn number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, RunError> {
    // Engines often render an unset variable as an empty one: both mean "use the default".
    let Some(text) = lookup(name).filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    match text.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(bad_config(format!(
            "{name} must be a whole number from {min} to {max}; unset it to use the default"
        ))),
    }
}

fn millis(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    min: u64,
    max: u64,
) -> Result<Option<Duration>, RunError> {
    Ok(number(lookup, name, min, max)?.map(Duration::from_millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, RunError> {
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_apply_when_only_the_key_is_set() {
        let s = settings(&[(API_KEY_VAR, "rf_live_x")]).unwrap();

        assert_eq!(s.base_url, DEFAULT_BASE_URL);
        assert_eq!(s.retry, RetryPolicy::default());
    }

    #[test]
    fn a_missing_or_blank_key_is_a_configuration_error() {
        for vars in [&[][..], &[(API_KEY_VAR, "  ")][..]] {
            let err = settings(vars).unwrap_err();

            assert!(
                matches!(&err, RunError::PermanentBadConfiguration(m) if m.contains(API_KEY_VAR))
            );
        }
    }

    #[test]
    fn the_key_is_kept_verbatim_and_hidden_from_debug() {
        let s = settings(&[(API_KEY_VAR, " opaque-{{placeholder}} ")]).unwrap();

        assert_eq!(s.api_key, " opaque-{{placeholder}} ");
        assert!(!format!("{s:?}").contains("placeholder"));
    }

    #[test]
    fn base_url_loses_its_trailing_slash_and_must_be_http() {
        let ok = settings(&[(API_KEY_VAR, "k"), (BASE_URL_VAR, "http://127.0.0.1:8080/")]);
        let bad = settings(&[(API_KEY_VAR, "k"), (BASE_URL_VAR, "ftp://x")]);

        assert_eq!(ok.unwrap().base_url, "http://127.0.0.1:8080");
        assert!(matches!(bad, Err(RunError::PermanentBadConfiguration(_))));
        for port in ["99999", "0", "", "http"] {
            let url = format!("http://127.0.0.1:{port}");
            let bad = settings(&[(API_KEY_VAR, "k"), (BASE_URL_VAR, &url)]);
            assert!(
                matches!(&bad, Err(RunError::PermanentBadConfiguration(m)) if m.contains("port")),
                "{url}: {bad:?}"
            );
        }
        // A query or fragment after the port is named as what it is, not as a bad port.
        for extra in ["?x=1", "#top"] {
            let url = format!("http://127.0.0.1:8080{extra}");
            let bad = settings(&[(API_KEY_VAR, "k"), (BASE_URL_VAR, &url)]);
            assert!(
                matches!(&bad, Err(RunError::PermanentBadConfiguration(m)) if m.contains("query")),
                "{url}: {bad:?}"
            );
        }
        let unicode = settings(&[(API_KEY_VAR, "k"), (BASE_URL_VAR, "http://é.example")]);
        assert_eq!(unicode.unwrap().base_url, "http://é.example");
        let upper = settings(&[
            (API_KEY_VAR, "k"),
            (BASE_URL_VAR, "HTTPS://Api.Example.com"),
        ]);
        assert_eq!(upper.unwrap().base_url, "https://Api.Example.com");
        for versioned in [
            "http://127.0.0.1:8080/v1",
            "https://gw.example.com/runflow/v1/",
        ] {
            let bad = settings(&[(API_KEY_VAR, "k"), (BASE_URL_VAR, versioned)]);
            assert!(
                matches!(&bad, Err(RunError::PermanentBadConfiguration(m)) if m.contains("/v1")),
                "{versioned}: {bad:?}"
            );
        }
        let prefixed = settings(&[
            (API_KEY_VAR, "k"),
            (BASE_URL_VAR, "https://gw.example.com/runflow"),
        ]);
        assert!(prefixed.is_ok());
        let v1_inside = settings(&[
            (API_KEY_VAR, "k"),
            (BASE_URL_VAR, "https://gw.example.com/v1/proxy"),
        ]);
        assert!(v1_inside.is_ok());
        let ipv6 = settings(&[(API_KEY_VAR, "k"), (BASE_URL_VAR, "http://[::1]:8080")]);
        let ipv6_bare = settings(&[(API_KEY_VAR, "k"), (BASE_URL_VAR, "http://[::1]")]);
        assert!(ipv6.is_ok() && ipv6_bare.is_ok());
    }

    #[test]
    fn retry_settings_are_read_and_checked() {
        let s = settings(&[
            (API_KEY_VAR, "k"),
            (MAX_ATTEMPTS_VAR, "3"),
            (BASE_DELAY_VAR, "10"),
        ])
        .unwrap();
        let bad = settings(&[(API_KEY_VAR, "k"), (MAX_ATTEMPTS_VAR, "0")]);

        let blank = settings(&[(API_KEY_VAR, "k"), (BUDGET_VAR, " ")]).unwrap();
        assert_eq!(blank.retry.budget, RetryPolicy::default().budget);
        assert_eq!(s.retry.max_attempts, 3);
        assert_eq!(s.retry.base_delay, Duration::from_millis(10));
        assert!(
            matches!(bad, Err(RunError::PermanentBadConfiguration(m)) if m.contains(MAX_ATTEMPTS_VAR))
        );
    }
}
