//! Checking the caller's input and building the exact JSON that Runflow receives.
//!
//! Every rule is checked before anything is sent, and a broken rule names the field, the
//! rule and what a valid value looks like. Options the caller left out are left out of the
//! body too (never sent as `null`), so Runflow and HeyGen apply their own defaults.

use serde_json::{json, Map, Value};

use crate::wit::{FieldProblem, Orientation, RunError, RunOptions, VideoRequest};

/// The most characters HeyGen accepts in a prompt.
pub const MAX_PROMPT_CHARS: usize = 10_000;
/// The most asset files one video may use.
pub const MAX_FILE_URLS: usize = 20;
/// The longest URL accepted for an asset or a callback.
pub const MAX_URL_LEN: usize = 2048;
/// The longest client reference accepted.
pub const MAX_CLIENT_REF_LEN: usize = 128;
/// The largest metadata object accepted, in bytes of JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// The longest run id accepted by `poll-run`.
pub const MAX_RUN_ID_LEN: usize = 128;

fn invalid(field: &str, problem: impl Into<String>) -> RunError {
    RunError::PermanentInvalidRequest(FieldProblem {
        field: field.to_string(),
        problem: problem.into(),
    })
}

/// Checks `request` and `options` and returns the JSON body of the create request.
pub fn create_body(request: &VideoRequest, options: &RunOptions) -> Result<Value, RunError> {
    let mut input = Map::new();

    if request.prompt.trim().is_empty() {
        return Err(invalid(
            "request.prompt",
            "is blank: describe the video to generate in 1 to 10000 characters",
        ));
    }
    let chars = request.prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(invalid(
            "request.prompt",
            format!("has {chars} characters; shorten it to at most {MAX_PROMPT_CHARS}"),
        ));
    }
    // Line breaks and tabs belong in a script; other control characters (a pasted terminal
    // escape, a NUL from a binary file) would reach HeyGen as garbage in the video.
    if let Some((at, c)) = request
        .prompt
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(invalid(
            "request.prompt",
            format!(
                "has the control character U+{:04X} at character {}; remove it (line breaks \
                 and tabs are fine)",
                c as u32,
                at + 1
            ),
        ));
    }
    input.insert("prompt".into(), json!(request.prompt));

    if let Some(orientation) = request.orientation {
        let name = match orientation {
            Orientation::Landscape => "landscape",
            Orientation::Portrait => "portrait",
        };
        input.insert("orientation".into(), json!(name));
    }
    for (field, key, value) in [
        ("request.avatar", "avatar", &request.avatar),
        ("request.voice", "voice", &request.voice),
        ("request.style-id", "style_id", &request.style_id),
    ] {
        if let Some(value) = value {
            check_name(field, value)?;
            input.insert(key.into(), json!(value));
        }
    }

    if request.file_urls.len() > MAX_FILE_URLS {
        return Err(invalid(
            "request.file-urls",
            format!(
                "has {} entries; a video may use at most {MAX_FILE_URLS} files",
                request.file_urls.len()
            ),
        ));
    }
    for (i, url) in request.file_urls.iter().enumerate() {
        check_asset_url(&format!("request.file-urls[{i}]"), url)?;
    }
    if !request.file_urls.is_empty() {
        input.insert("file_urls".into(), json!(request.file_urls));
    }

    if let Some(incognito) = request.incognito_mode {
        input.insert("incognito_mode".into(), json!(incognito));
    }

    let mut body = Map::new();
    body.insert("input".into(), Value::Object(input));

    if let Some(url) = &options.callback_url {
        check_callback_url(url)?;
        body.insert("callback_url".into(), json!(url));
    }
    if let Some(text) = &options.metadata {
        body.insert("metadata".into(), parse_metadata(text)?);
    }
    if let Some(client_ref) = &options.client_ref {
        check_client_ref(client_ref)?;
        body.insert("client_ref".into(), json!(client_ref));
    }

    Ok(Value::Object(body))
}

/// An avatar, voice or style given explicitly must say something.
fn check_name(field: &str, value: &str) -> Result<(), RunError> {
    if value.trim().is_empty() {
        return Err(invalid(
            field,
            "is blank: give a name or id, `auto`, or leave it out to let the agent choose",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters: remove them"));
    }
    Ok(())
}

/// Splits an absolute URL into its scheme and host, or says what is wrong with it.
fn scheme_and_host(url: &str) -> Result<(&str, &str), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("is longer than {MAX_URL_LEN} bytes"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters: percent-encode them".into());
    }
    // Browsers and many servers read `\` as `/`, which would move the host part.
    if url.contains('\\') {
        return Err("contains a backslash: write the URL with forward slashes only".into());
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("is not an absolute URL: it must start with https:// or http://")?;
    let scheme_lower = scheme.to_ascii_lowercase();
    if scheme_lower != "https" && scheme_lower != "http" {
        return Err(format!(
            "uses the scheme `{scheme}`: only https:// and http:// URLs can be fetched"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err("has no host: write it as https://host/path".into());
    }
    Ok((
        if scheme_lower == "https" {
            "https"
        } else {
            "http"
        },
        host,
    ))
}

fn check_asset_url(field: &str, url: &str) -> Result<(), RunError> {
    scheme_and_host(url)
        .map(|_| ())
        .map_err(|p| invalid(field, p))
}

/// Callback URLs must be https, except on a loopback host where plain http is handy for
/// local testing and cannot leak the callback over a network.
pub fn check_callback_url(url: &str) -> Result<(), RunError> {
    const FIELD: &str = "options.callback-url";
    let (scheme, host) = scheme_and_host(url).map_err(|p| invalid(FIELD, p))?;
    if scheme == "http" && !is_loopback(host) {
        return Err(invalid(
            FIELD,
            "uses plain http on a non-loopback host: use https (http is allowed only for \
             localhost, 127.0.0.0/8 and ::1)",
        ));
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    if host == "localhost" || host == "::1" {
        return true;
    }
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4 && octets[0] == "127" && octets.iter().all(|o| o.parse::<u8>().is_ok())
}

fn parse_metadata(text: &str) -> Result<Value, RunError> {
    const FIELD: &str = "options.metadata";
    if text.len() > MAX_METADATA_BYTES {
        return Err(invalid(
            FIELD,
            format!(
                "is {} bytes; keep it under {MAX_METADATA_BYTES}",
                text.len()
            ),
        ));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(invalid(
            FIELD,
            "must be a JSON object such as {\"campaign\": \"winter\"}, not another JSON value",
        )),
        Err(e) => Err(invalid(
            FIELD,
            format!(
                "is not valid JSON ({e}): give a JSON object such as {{\"campaign\": \"winter\"}}"
            ),
        )),
    }
}

/// Client references go into a listing filter, so they are kept to characters that need no
/// quoting or escaping anywhere.
pub fn check_client_ref(client_ref: &str) -> Result<(), RunError> {
    const FIELD: &str = "options.client-ref";
    if client_ref.is_empty() || client_ref.len() > MAX_CLIENT_REF_LEN {
        return Err(invalid(
            FIELD,
            format!("must be 1 to {MAX_CLIENT_REF_LEN} characters long"),
        ));
    }
    if let Some(c) = client_ref.chars().find(|c| !is_token_char(*c)) {
        return Err(invalid(
            FIELD,
            format!(
                "contains {c:?}: use only letters, digits and `-`, `_`, `.`, `~` \
                 (for example a workflow's execution id)"
            ),
        ));
    }
    Ok(())
}

/// A run id goes into the request path, so it must be exactly one safe path segment.
pub fn check_run_id(run_id: &str) -> Result<(), RunError> {
    const FIELD: &str = "run-id";
    if run_id.is_empty() {
        return Err(invalid(
            FIELD,
            "is empty: pass the id that create-run returned",
        ));
    }
    if run_id.len() > MAX_RUN_ID_LEN {
        return Err(invalid(
            FIELD,
            format!("is longer than {MAX_RUN_ID_LEN} characters: pass a Runflow run id"),
        ));
    }
    if run_id == "." || run_id == ".." {
        return Err(invalid(FIELD, "is a relative path: pass a Runflow run id"));
    }
    if let Some(c) = run_id.chars().find(|c| !is_token_char(*c)) {
        return Err(invalid(
            FIELD,
            format!(
                "contains {c:?}: a run id is one path segment of letters, digits and `-`, \
                 `_`, `.`, `~` (such as 01936f0e-7a3c-7c2e-9d41-5b8e2f1a4c90)"
            ),
        ));
    }
    Ok(())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prompt: &str) -> VideoRequest {
        VideoRequest {
            prompt: prompt.into(),
            orientation: None,
            avatar: None,
            voice: None,
            style_id: None,
            file_urls: vec![],
            incognito_mode: None,
        }
    }

    fn no_options() -> RunOptions {
        RunOptions {
            callback_url: None,
            metadata: None,
            client_ref: None,
        }
    }

    fn field_of(err: RunError) -> String {
        match err {
            RunError::PermanentInvalidRequest(p) => p.field,
            other => panic!("expected an invalid-request error, got {other:?}"),
        }
    }

    #[test]
    fn a_bare_prompt_sends_only_the_prompt() {
        let body = create_body(&request("A cat explains taxes"), &no_options()).unwrap();

        assert_eq!(body, json!({"input": {"prompt": "A cat explains taxes"}}));
    }

    #[test]
    fn every_field_maps_to_its_documented_name() {
        let req = VideoRequest {
            orientation: Some(Orientation::Portrait),
            avatar: Some("auto".into()),
            voice: Some("Aria".into()),
            style_id: Some("style_noir_detective".into()),
            file_urls: vec!["https://example.com/a.png".into()],
            incognito_mode: Some(true),
            ..request("p")
        };
        let options = RunOptions {
            callback_url: Some("https://hooks.example.com/runflow".into()),
            metadata: Some(r#"{"campaign":"winter"}"#.into()),
            client_ref: Some("order-4711".into()),
        };

        let body = create_body(&req, &options).unwrap();

        assert_eq!(
            body,
            json!({
                "input": {
                    "prompt": "p", "orientation": "portrait", "avatar": "auto",
                    "voice": "Aria", "style_id": "style_noir_detective",
                    "file_urls": ["https://example.com/a.png"], "incognito_mode": true
                },
                "callback_url": "https://hooks.example.com/runflow",
                "metadata": {"campaign": "winter"},
                "client_ref": "order-4711"
            })
        );
    }

    #[test]
    fn prompt_length_is_counted_in_characters() {
        let at_limit = "é".repeat(MAX_PROMPT_CHARS);
        let over = "é".repeat(MAX_PROMPT_CHARS + 1);

        assert!(create_body(&request(&at_limit), &no_options()).is_ok());
        assert_eq!(
            field_of(create_body(&request(&over), &no_options()).unwrap_err()),
            "request.prompt"
        );
        assert_eq!(
            field_of(create_body(&request(" \n\t"), &no_options()).unwrap_err()),
            "request.prompt"
        );
    }

    #[test]
    fn prompts_keep_line_breaks_and_tabs_but_refuse_other_control_characters() {
        let script = "Scene 1:\r\n\tA bakery at dawn.\nScene 2: bread.";

        assert!(create_body(&request(script), &no_options()).is_ok());
        for bad in [
            "red\u{1b}[31m text",
            "nul\0byte",
            "bell\u{7}",
            "c1\u{85}next",
        ] {
            let err = create_body(&request(bad), &no_options()).unwrap_err();
            let RunError::PermanentInvalidRequest(problem) = err else {
                panic!("{bad:?} was not refused as invalid");
            };
            assert_eq!(problem.field, "request.prompt");
            assert!(
                problem.problem.contains("control character U+"),
                "{problem:?}"
            );
        }
    }

    #[test]
    fn file_urls_are_limited_and_must_be_absolute_http() {
        let too_many = VideoRequest {
            file_urls: vec!["https://example.com/a.png".into(); 21],
            ..request("p")
        };
        let relative = VideoRequest {
            file_urls: vec!["https://e.com/a".into(), "/a.png".into()],
            ..request("p")
        };
        let ftp = VideoRequest {
            file_urls: vec!["ftp://e.com/a".into()],
            ..request("p")
        };

        assert_eq!(
            field_of(create_body(&too_many, &no_options()).unwrap_err()),
            "request.file-urls"
        );
        assert_eq!(
            field_of(create_body(&relative, &no_options()).unwrap_err()),
            "request.file-urls[1]"
        );
        assert_eq!(
            field_of(create_body(&ftp, &no_options()).unwrap_err()),
            "request.file-urls[0]"
        );
    }

    #[test]
    fn callback_urls_must_be_https_unless_loopback() {
        for ok in [
            "https://hooks.example.com/x",
            "http://127.0.0.1:9000/cb",
            "http://localhost/cb",
            "http://[::1]:80/cb",
        ] {
            assert!(check_callback_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://hooks.example.com/x",
            "http://127.0.0.1.evil.com/",
            "http://evil.example\\@127.0.0.1/cb",
            "https://",
            "hooks.example.com",
        ] {
            assert!(check_callback_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_must_be_a_json_object() {
        for bad in ["[1,2]", "\"text\"", "{not json", "null"] {
            let options = RunOptions {
                metadata: Some(bad.into()),
                ..no_options()
            };

            let err = create_body(&request("p"), &options).unwrap_err();

            assert_eq!(field_of(err), "options.metadata", "{bad}");
        }
    }

    #[test]
    fn run_ids_must_be_one_safe_path_segment() {
        assert!(check_run_id("01936f0e-7a3c-7c2e-9d41-5b8e2f1a4c90").is_ok());
        for bad in [
            "", ".", "..", "a/b", "../x", "a b", "a\u{0}", "a?b", "a%2f", "a#",
        ] {
            assert_eq!(
                field_of(check_run_id(bad).unwrap_err()),
                "run-id",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn client_refs_are_plain_tokens() {
        assert!(check_client_ref("E_01KA.order-4711~2").is_ok());
        for bad in ["", "a b", "a:b", "a\"b", &"x".repeat(129)] {
            assert!(check_client_ref(bad).is_err(), "{bad:?}");
        }
    }
}
