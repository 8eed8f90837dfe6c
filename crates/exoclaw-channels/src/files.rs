//! Files in chats, both ways, the same on every platform.
//!
//! In: the files of a message are downloaded when its turn starts ([`ChatFiles`], the runtime's
//! [`Attachments`]) and given to the model as what it can read: an image (PNG, JPEG, GIF, WebP —
//! recognised by its bytes, not by what the platform claims — up to 5 MB) as an image, a text file
//! (up to 100 KB shown) as text, anything else as a line naming it, its type and size, with a link
//! the user can open where the platform gives one that works without the bot's credentials. A
//! download that fails is a line saying why: the turn goes on.
//!
//! Out: a turn in a chat offers the agent `send_file`; the files it chose are uploaded after the
//! answer ([`send_all`]), each failure said in the chat.

use crate::progress::Place;
use async_trait::async_trait;
use base64::Engine as _;
use exoclaw_core::runtime::{Attachments, OutgoingFile, size};
use exoclaw_types::{ImageSource, Part};
use std::sync::Arc;

/// The largest file downloaded from a chat (a Telegram bot may download at most 20 MB).
pub(crate) const MAX_DOWNLOAD_BYTES: u64 = 20_000_000;
/// The largest image given to the model (what providers accept inline).
const MAX_IMAGE_BYTES: usize = 5_000_000;
/// The most of a text file put in the message.
const MAX_TEXT_BYTES: usize = 100_000;
/// The most files of one message read.
const MAX_FILES: usize = 10;

/// A file that came with a message, as its platform describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Incoming {
    /// Its file name.
    pub name: String,
    /// Its media type, as the platform says.
    pub media_type: Option<String>,
    /// Its size, as the platform says.
    pub bytes: Option<u64>,
    /// Where the platform serves it: a URL, or Telegram's `file_id`.
    pub source: String,
    /// A link the user can open, for a file the model cannot read.
    pub link: Option<String>,
}

/// How one platform downloads a file.
#[async_trait]
pub(crate) trait Download: Send + Sync + 'static {
    /// At most `limit` bytes of `file`, or why it could not be had.
    async fn download(&self, file: &Incoming, limit: u64) -> Result<Vec<u8>, String>;
}

/// A message's files, downloaded by `D` when its turn starts.
pub(crate) struct ChatFiles<D> {
    files: Vec<Incoming>,
    download: D,
}

impl<D: Download> ChatFiles<D> {
    /// The runtime's attachments for `files`; `None` when there are none.
    pub(crate) fn attach(files: Vec<Incoming>, download: D) -> Option<Arc<dyn Attachments>> {
        (!files.is_empty()).then(|| Arc::new(Self { files, download }) as Arc<dyn Attachments>)
    }
}

#[async_trait]
impl<D: Download> Attachments for ChatFiles<D> {
    async fn fetch(&self) -> Vec<Part> {
        let mut parts = Vec::new();
        for file in self.files.iter().take(MAX_FILES) {
            let got = match file.bytes {
                Some(bytes) if bytes > MAX_DOWNLOAD_BYTES => Err(too_big(bytes)),
                _ => self.download.download(file, MAX_DOWNLOAD_BYTES).await,
            };
            if let Err(error) = &got {
                tracing::warn!(file = %file.name, "an attached file could not be downloaded: {error}");
            }
            parts.extend(parts_of(file, got));
        }
        if self.files.len() > MAX_FILES {
            let more = self.files.len() - MAX_FILES;
            parts.push(Part::text(format!(
                "[{more} more attached files were not read: at most {MAX_FILES} are.]"
            )));
        }
        parts
    }
}

fn too_big(bytes: u64) -> String {
    format!("it is {}, over the {} exoclaw downloads", size(bytes), size(MAX_DOWNLOAD_BYTES))
}

/// Downloads `url` (sending `authorization` as the header's whole value, if given): at most
/// `limit` bytes. The error never holds the URL (a Telegram file URL holds the bot's token).
pub(crate) async fn get(
    client: &reqwest::Client,
    url: &str,
    authorization: Option<&str>,
    limit: u64,
) -> Result<Vec<u8>, String> {
    let mut request = client.get(url);
    if let Some(authorization) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    let mut response = request.send().await.map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("the platform answered {}", response.status()));
    }
    if let Some(length) = response.content_length().filter(|length| *length > limit) {
        return Err(too_big(length));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.without_url().to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > limit {
            return Err(format!("it is over the {} exoclaw downloads", size(limit)));
        }
    }
    Ok(body)
}

/// What the model is given of `file`, downloaded (`Ok`) or not.
fn parts_of(file: &Incoming, got: Result<Vec<u8>, String>) -> Vec<Part> {
    let bytes = match got {
        Ok(bytes) => bytes,
        Err(why) => {
            return vec![Part::text(format!(
                "[Attached: {}. It could not be downloaded: {why}.]",
                about(file, file.bytes)
            ))];
        }
    };
    let about = about(file, Some(bytes.len() as u64));
    if let Some(media_type) = image_type(&bytes) {
        if bytes.len() > MAX_IMAGE_BYTES {
            return vec![Part::text(format!(
                "[Attached image: {about}. It is too large to show you (over {}).]",
                size(MAX_IMAGE_BYTES as u64)
            ))];
        }
        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        return vec![
            Part::text(format!("[Attached image: {about}.]")),
            Part::Image { source: ImageSource::Base64 { media_type: media_type.to_owned(), data } },
        ];
    }
    if let Some(text) = as_text(file, &bytes) {
        let (shown, cut) = match text.len() > MAX_TEXT_BYTES {
            true => (
                &text[..text.floor_char_boundary(MAX_TEXT_BYTES)],
                "\n[Cut: only the file's beginning is shown.]",
            ),
            false => (text, ""),
        };
        let fence = fence_for(shown);
        return vec![Part::text(format!("[Attached file: {about}.]\n{fence}\n{shown}\n{fence}{cut}"))];
    }
    let link = file.link.as_ref().map(|link| format!(" The user can open it at {link}")).unwrap_or_default();
    vec![Part::text(format!(
        "[Attached file: {about}. Its contents cannot be shown to you: only images and text files are read.{link}]"
    ))]
}

/// "`report.pdf` (application/pdf, 1.2 MB)".
fn about(file: &Incoming, bytes: Option<u64>) -> String {
    let mut details: Vec<String> = file.media_type.iter().cloned().collect();
    details.extend(bytes.map(size));
    match details.is_empty() {
        true => format!("`{}`", file.name),
        false => format!("`{}` ({})", file.name, details.join(", ")),
    }
}

/// The image type `bytes` start as, if they are one a model reads.
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, ..] => Some("image/png"),
        [0xff, 0xd8, 0xff, ..] => Some("image/jpeg"),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some("image/gif"),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some("image/webp"),
        _ => None,
    }
}

/// The file as text, when it is: UTF-8 without NUL bytes, and not said to be something else.
fn as_text<'a>(file: &Incoming, bytes: &'a [u8]) -> Option<&'a str> {
    let said_text = file.media_type.as_deref().is_none_or(|media_type| {
        let media_type = media_type.split(';').next().unwrap_or_default().trim();
        media_type.starts_with("text/")
            || media_type == "application/octet-stream"
            || ["json", "xml", "yaml", "toml", "javascript", "x-sh", "sql", "csv"]
                .iter()
                .any(|kind| media_type.starts_with("application/") && media_type.ends_with(kind))
    });
    if !said_text || bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// A code fence longer than any run of backticks in `text`.
fn fence_for(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// Uploads `files` where the answer went, one after another; a file that cannot be read or
/// uploaded is said in the chat (and logged), the others still sent.
pub(crate) async fn send_all<P: Place>(place: &P, files: Vec<OutgoingFile>) {
    for file in files {
        let sent = match file.read(place.max_file_bytes()).await {
            Ok(bytes) => place.send_file(&file, bytes).await,
            Err(error) => Err(format!("it cannot be sent: {error}")),
        };
        if let Err(error) = sent {
            tracing::warn!(file = %file.name, "a file the agent sent could not be uploaded: {error}");
            if let Err(error) =
                place.more(&format!("(The file `{}` could not be sent: {error})", file.name)).await
            {
                tracing::warn!("nor could the chat be told: {error}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, media_type: Option<&str>) -> Incoming {
        Incoming {
            name: name.to_owned(),
            media_type: media_type.map(str::to_owned),
            bytes: None,
            source: String::new(),
            link: None,
        }
    }

    fn texts(parts: &[Part]) -> Vec<String> {
        parts
            .iter()
            .map(|part| match part {
                Part::Text { text } => text.clone(),
                Part::Image { source: ImageSource::Base64 { media_type, .. } } => format!("<{media_type}>"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];

    #[test]
    fn an_image_is_given_as_an_image_whatever_its_claimed_type() {
        let parts = parts_of(&file("cat.bin", Some("application/octet-stream")), Ok(PNG.to_vec()));
        assert_eq!(
            texts(&parts),
            ["[Attached image: `cat.bin` (application/octet-stream, 12 bytes).]", "<image/png>"]
        );
        let Part::Image { source: ImageSource::Base64 { data, .. } } = &parts[1] else { unreachable!() };
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(data).unwrap(), PNG);
    }

    #[test]
    fn a_text_file_is_shown_fenced_and_a_long_one_cut() {
        let parts =
            parts_of(&file("notes.md", Some("text/markdown")), Ok(b"# Plan\nuse ``` fences".to_vec()));
        assert_eq!(
            texts(&parts),
            ["[Attached file: `notes.md` (text/markdown, 21 bytes).]\n````\n# Plan\nuse ``` fences\n````"]
        );
        let long = "é".repeat(MAX_TEXT_BYTES);
        let parts = parts_of(&file("long.txt", None), Ok(long.into_bytes()));
        let text = &texts(&parts)[0];
        assert!(text.ends_with("[Cut: only the file's beginning is shown.]"), "{}", &text[text.len() - 80..]);
        assert!(text.len() < MAX_TEXT_BYTES + 200);
    }

    #[test]
    fn a_binary_file_is_named_with_its_link_and_a_failed_download_says_why() {
        let mut pdf = file("report.pdf", Some("application/pdf"));
        pdf.link = Some("https://cdn.example/report.pdf".into());
        let parts = parts_of(&pdf, Ok(b"%PDF-1.7 text-looking".to_vec()));
        assert_eq!(
            texts(&parts),
            [
                "[Attached file: `report.pdf` (application/pdf, 21 bytes). Its contents cannot be shown to you: only images and text files are read. The user can open it at https://cdn.example/report.pdf]"
            ]
        );
        let parts = parts_of(&file("x.zip", None), Ok(vec![0x50, 0x4b, 3, 4, 0, 0]));
        assert!(texts(&parts)[0].contains("cannot be shown to you"), "{parts:?}");
        let parts = parts_of(&file("y.txt", None), Err("the platform answered 404 Not Found".into()));
        assert_eq!(
            texts(&parts),
            ["[Attached: `y.txt`. It could not be downloaded: the platform answered 404 Not Found.]"]
        );
    }

    #[test]
    fn a_big_image_is_described_not_sent() {
        let mut big = PNG.to_vec();
        big.resize(MAX_IMAGE_BYTES + 1, 0);
        let parts = parts_of(&file("huge.png", Some("image/png")), Ok(big));
        assert_eq!(
            texts(&parts),
            ["[Attached image: `huge.png` (image/png, 5.0 MB). It is too large to show you (over 5.0 MB).]"]
        );
    }
}
