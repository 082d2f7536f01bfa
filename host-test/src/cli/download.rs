//! Saving a run's output files. Each file streams into a temporary file beside its final
//! name and is renamed only once it is whole, so a failed or interrupted download never
//! leaves a partial file under the final name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use host_test::runtime::{Output, Run};
use reqwest::Url;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::output::Printer;
use super::Failure;

/// How long connecting may take, and how long the answer may pause between two reads.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Presigned links may redirect to a CDN, but not endlessly.
const MAX_REDIRECTS: usize = 10;

/// A file saved from a run's outputs.
pub struct Saved {
    /// The output's URL, as the run gave it.
    pub url: String,
    /// Where the file now is.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The kind of output (`video`, `image`, ...), if Runflow named it.
    pub media_type: Option<String>,
}

impl Saved {
    /// The JSON form listed under `downloads`.
    pub fn to_json(&self) -> Value {
        json!({
            "media_type": self.media_type,
            "url": self.url,
            "path": self.path,
            "bytes": self.bytes,
        })
    }
}

/// Why some downloads failed: the files that were saved, and what went wrong with the rest.
pub struct DownloadFailed {
    pub saved: Vec<Saved>,
    pub message: String,
}

/// Makes sure files can be saved in `dir`, before any run is paid for. A folder that does
/// not exist yet is not made here (the input may still be refused, and the run never made):
/// the nearest folder that does exist must take files, and `dir` is made when the first file
/// is saved.
pub fn prepare_dir(dir: &Path) -> Result<PathBuf, Failure> {
    let unusable = |e: std::io::Error| {
        Failure::usage(
            "usage",
            format!(
                "--download {}: cannot write files there ({e}): pick a folder you can write to",
                dir.display()
            ),
        )
    };
    // The nearest ancestor that exists (a relative path ends at the working folder); a
    // folder that cannot even be looked at is reported, not walked past.
    let mut existing = Path::new(".");
    for ancestor in dir.ancestors() {
        let ancestor = if ancestor.as_os_str().is_empty() {
            Path::new(".")
        } else {
            ancestor
        };
        match ancestor.try_exists() {
            Ok(true) => {
                existing = ancestor;
                break;
            }
            // A link to nothing: creating the folder would fail only after the run was paid.
            Ok(false) if ancestor.is_symlink() => {
                let target = std::fs::read_link(ancestor)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "a path".into());
                return Err(unusable(std::io::Error::other(format!(
                    "{} is a link to {target}, which does not exist",
                    ancestor.display()
                ))));
            }
            // Under a file: keep climbing to that file, which is refused below by name.
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {}
            Err(e) => return Err(unusable(e)),
        }
    }
    if !existing.is_dir() {
        return Err(unusable(std::io::Error::other(format!(
            "{} is a file, not a folder",
            existing.display()
        ))));
    }
    tempfile::Builder::new()
        .prefix(".heygen-agent-check-")
        .tempfile_in(existing)
        .map(drop)
        .map_err(unusable)?;
    Ok(dir.to_path_buf())
}

/// Saves every output of `run` into `dir`, one after the other, named
/// `<run-id>-<n>-<kind>.<ext>`. A file that cannot be saved does not stop the others: each
/// is tried, and the failure lists every one that was not saved.
pub async fn save_outputs(
    run: &Run,
    dir: &Path,
    out: &Printer,
) -> Result<Vec<Saved>, DownloadFailed> {
    let mut saved = Vec::new();
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Err(DownloadFailed {
            saved,
            message: format!("cannot make the folder {} ({e})", dir.display()),
        });
    }
    let mut failures = Vec::new();
    for (index, output) in run.outputs.iter().enumerate() {
        let stem = format!(
            "{}-{}-{}",
            file_part(&run.id),
            index + 1,
            file_part(output.media_type.as_deref().unwrap_or("file"))
        );
        let kind = output.media_type.as_deref().unwrap_or("file");
        let label = format!("saving {}/{} {kind}", index + 1, run.outputs.len());
        match save_one(output, dir, &stem, out, label).await {
            Ok(file) => {
                out.saved(&file);
                saved.push(file);
            }
            Err(why) => failures.push(format!(
                "could not save output {} ({kind}) from {}: {why}",
                index + 1,
                without_query(&output.url)
            )),
        }
    }
    if failures.is_empty() {
        Ok(saved)
    } else {
        Err(DownloadFailed {
            saved,
            message: failures.join("; "),
        })
    }
}

/// Streams one output into `dir`; the error says what went wrong, in words.
async fn save_one(
    output: &Output,
    dir: &Path,
    stem: &str,
    out: &Printer,
    label: String,
) -> Result<Saved, String> {
    let url = checked_url(&output.url)?;
    let mut response = client_for(&url)?
        .get(url.clone())
        .send()
        .await
        .map_err(describe)?;
    let status = response.status();
    if status.is_redirection() && response.headers().contains_key(reqwest::header::LOCATION) {
        // Redirects to http(s) were followed already; this one points somewhere else.
        return Err(format!(
            "the server redirected the download (HTTP {status}) to a link that is not http or \
             https; it was not followed"
        ));
    }
    if !status.is_success() {
        return Err(format!(
            "the server answered HTTP {status}; links expire, and polling the run again gives fresh ones"
        ));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let name = format!("{stem}.{}", extension(url.path(), content_type.as_deref()));
    let path = dir.join(&name);
    let expected = response.content_length();

    let temp =
        temp_file(dir, &name).map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    let mut file = tokio::fs::File::from_std(
        temp.as_file()
            .try_clone()
            .map_err(|e| format!("cannot write {}: {e}", temp.path().display()))?,
    );
    let bar = out.download_bar(label, expected);
    let streamed = stream(&mut response, &mut file, &bar).await;
    // Cleared on failure too, so the error is not printed under a stale bar.
    bar.finish_and_clear();
    let written = streamed.map_err(|why| match why {
        StreamError::Read(e) => describe(e),
        StreamError::Write(e) => format!("cannot write {}: {e}", temp.path().display()),
    })?;
    if let Some(expected) = expected.filter(|&n| n != written) {
        return Err(format!(
            "the transfer ended after {written} of {expected} bytes; try again"
        ));
    }
    // Flushed and synced before the rename, so the final name never points at less.
    let synced = match file.flush().await {
        Ok(()) => file.sync_all().await,
        Err(e) => Err(e),
    };
    synced.map_err(|e| format!("cannot write {}: {e}", temp.path().display()))?;
    drop(file);
    temp.persist(&path)
        .map_err(|e| format!("cannot rename the finished file to {}: {e}", path.display()))?;
    Ok(Saved {
        url: output.url.clone(),
        path,
        bytes: written,
        media_type: output.media_type.clone(),
    })
}

/// What broke while streaming: the transfer or the disk.
enum StreamError {
    Read(reqwest::Error),
    Write(std::io::Error),
}

/// Copies the body into `file` chunk by chunk; returns the bytes written.
async fn stream(
    response: &mut reqwest::Response,
    file: &mut tokio::fs::File,
    bar: &indicatif::ProgressBar,
) -> Result<u64, StreamError> {
    let mut written = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(StreamError::Read)? {
        file.write_all(&chunk).await.map_err(StreamError::Write)?;
        written += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    Ok(written)
}

/// Parses an output URL, refusing everything but http and https.
fn checked_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("the URL is not valid ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "only http and https links are downloaded, not `{}:` ones",
            url.scheme()
        ));
    }
    Ok(url)
}

/// A client for one download. Loopback addresses (the emulator) never go through a proxy;
/// other hosts honour the usual proxy variables. Redirects may not leave https for http.
fn client_for(url: &Url) -> Result<reqwest::Client, String> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if downgrade {
            attempt.error("a redirect from https to plain http")
        } else {
            attempt.follow()
        }
    });
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(policy)
        .user_agent(concat!("heygen-agent/", env!("CARGO_PKG_VERSION")));
    if is_loopback(url) {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the download client: {}", describe(e)))
}

fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or("").trim_matches(['[', ']']);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A hidden temporary file in `dir`, readable like any file the user makes.
fn temp_file(dir: &Path, name: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".part");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // The umask still applies, as for any new file.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// An error and its causes on one line, without the URL (a presigned URL's query is a
/// credential of sorts; the caller names the URL without it).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let timed_out = error.is_timeout();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if timed_out {
        text.push_str(" (timed out; check the network and try again)");
    }
    text
}

/// The URL without its query string.
fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// The file extension: from the URL's last path segment, else from the media type, else
/// `bin`.
fn extension(path: &str, content_type: Option<&str>) -> String {
    let last = path.rsplit('/').next().unwrap_or("");
    if let Some((_, ext)) = last.rsplit_once('.') {
        // Only a media file's extension is taken from the link: one the server chose freely
        // (`.sh`, `.exe`, `.html`) could make a double-click run or render the file.
        let ext = ext.to_ascii_lowercase();
        if MEDIA_EXTENSIONS.contains(&ext.as_str()) {
            return ext;
        }
    }
    let essence = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    let ext = match essence.as_deref() {
        Some("video/mp4") => "mp4",
        Some("video/quicktime") => "mov",
        Some("video/webm") => "webm",
        Some("image/jpeg") => "jpg",
        Some("image/png") => "png",
        Some("image/webp") => "webp",
        Some("image/gif") => "gif",
        Some("audio/mpeg") => "mp3",
        Some("audio/mp4") => "m4a",
        Some("audio/wav" | "audio/x-wav" | "audio/wave") => "wav",
        Some("application/pdf") => "pdf",
        _ => "bin",
    };
    ext.to_string()
}

/// The extensions a run's outputs may carry (video, image, audio, documents, subtitles).
const MEDIA_EXTENSIONS: &[&str] = &[
    "mp4", "mov", "webm", "mkv", "m4v", "jpg", "jpeg", "png", "webp", "gif", "mp3", "m4a", "wav",
    "aac", "ogg", "pdf", "srt", "vtt",
];

/// A piece of a file name from text the API chose: letters, digits, `-` and `_` only, so
/// that no run id or media type can climb out of the folder or hide the file.
fn file_part(text: &str) -> String {
    let part: String = text
        .chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if part.is_empty() {
        "run".into()
    } else {
        part
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_comes_from_the_path_then_the_media_type() {
        assert_eq!(extension("/files/abc/video.mp4", None), "mp4");
        assert_eq!(extension("/files/abc/thumb.JPG", Some("image/png")), "jpg");
        assert_eq!(extension("/files/abc/video", Some("video/mp4; x=1")), "mp4");
        assert_eq!(extension("/v1.2/asset", Some("image/jpeg")), "jpg");
        assert_eq!(extension("/files/x.tar-gz", None), "bin");
        assert_eq!(extension("/", None), "bin");
        assert_eq!(extension("/files/run.sh", Some("video/mp4")), "mp4");
        assert_eq!(extension("/files/setup.EXE", None), "bin");
        assert_eq!(extension("/files/page.html", Some("text/html")), "bin");
    }

    #[test]
    fn names_cannot_leave_the_folder() {
        assert_eq!(file_part("../../etc/passwd"), "______etc_passwd");
        assert_eq!(file_part("01936f0e-7a3c"), "01936f0e-7a3c");
        assert_eq!(file_part(""), "run");
    }

    #[test]
    fn only_http_and_https_links_are_fetched() {
        assert!(checked_url("https://cdn.example.com/v.mp4?sig=1").is_ok());
        assert!(checked_url("http://127.0.0.1:8787/files/a/video.mp4").is_ok());
        for bad in [
            "file:///etc/passwd",
            "ftp://example.com/v.mp4",
            "data:,x",
            "/relative",
        ] {
            assert!(checked_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_leave_out_the_signature() {
        assert_eq!(
            without_query("https://cdn.example.com/v.mp4?X-Amz-Signature=abc"),
            "https://cdn.example.com/v.mp4"
        );
    }
}
