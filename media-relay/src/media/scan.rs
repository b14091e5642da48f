//! The scan hook: every upload can be shown to a malware scanner before it is stored. The one
//! scanner built in speaks ClamAV's `clamd` protocol (`INSTREAM`, over TCP or a Unix socket).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What a scanner said about some bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found.
    Clean,
    /// The scanner recognised malware; its name for it.
    Infected(String),
}

/// A scan that could not be completed: the upload is refused (fail closed).
#[derive(Debug, thiserror::Error)]
#[error("the malware scanner failed: {0}")]
pub struct ScanFailed(String);

/// A `clamd` to scan with: `host:port`, or `unix:/path/to/clamd.ctl`.
#[derive(Debug, Clone)]
pub struct Clamd {
    address: String,
    timeout: Duration,
}

/// The chunk size of an `INSTREAM` scan (clamd's default `StreamMaxLength` is 25 MiB in total).
const CHUNK: usize = 64 << 10;
/// The longest answer read from clamd.
const MAX_REPLY: u64 = 4096;

impl Clamd {
    /// A scanner at `address`, each scan bounded by `timeout` from connect to verdict.
    pub fn new(address: impl Into<String>, timeout: Duration) -> Self {
        Self { address: address.into(), timeout }
    }

    /// Scans `bytes`.
    pub async fn scan(&self, bytes: &[u8]) -> Result<Verdict, ScanFailed> {
        let fail = |e: std::io::Error| ScanFailed(e.to_string());
        let scan = async {
            if let Some(path) = self.address.strip_prefix("unix:") {
                #[cfg(unix)]
                {
                    let stream = tokio::net::UnixStream::connect(path).await.map_err(fail)?;
                    return instream(stream, bytes).await;
                }
                #[cfg(not(unix))]
                return Err(ScanFailed(format!("no Unix sockets here for {path}")));
            }
            let stream = tokio::net::TcpStream::connect(&self.address).await.map_err(fail)?;
            instream(stream, bytes).await
        };
        tokio::time::timeout(self.timeout, scan)
            .await
            .map_err(|_| ScanFailed(format!("no verdict within {:?}", self.timeout)))?
    }
}

/// One `zINSTREAM` exchange: the command, length-prefixed chunks, an empty chunk, one reply.
async fn instream(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    bytes: &[u8],
) -> Result<Verdict, ScanFailed> {
    let fail = |e: std::io::Error| ScanFailed(e.to_string());
    stream.write_all(b"zINSTREAM\0").await.map_err(fail)?;
    for chunk in bytes.chunks(CHUNK) {
        let len = u32::try_from(chunk.len()).map_err(|e| ScanFailed(e.to_string()))?;
        stream.write_all(&len.to_be_bytes()).await.map_err(fail)?;
        stream.write_all(chunk).await.map_err(fail)?;
    }
    stream.write_all(&0u32.to_be_bytes()).await.map_err(fail)?;
    stream.flush().await.map_err(fail)?;
    let mut reply = Vec::new();
    stream.take(MAX_REPLY).read_to_end(&mut reply).await.map_err(fail)?;
    parse_reply(&reply)
}

/// `stream: OK`, `stream: <name> FOUND`, or an error (`… ERROR`).
fn parse_reply(reply: &[u8]) -> Result<Verdict, ScanFailed> {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n']).trim();
    let verdict = text.strip_prefix("stream:").map(str::trim);
    match verdict {
        Some("OK") => Ok(Verdict::Clean),
        Some(found) if found.ends_with(" FOUND") => {
            Ok(Verdict::Infected(found.trim_end_matches(" FOUND").to_owned()))
        }
        _ => Err(ScanFailed(format!("unexpected reply {:.200}", text))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        assert_eq!(parse_reply(b"stream: OK\0").unwrap(), Verdict::Clean);
        assert_eq!(
            parse_reply(b"stream: Eicar-Test-Signature FOUND\0").unwrap(),
            Verdict::Infected("Eicar-Test-Signature".into())
        );
        assert!(parse_reply(b"INSTREAM size limit exceeded. ERROR\0").is_err());
        assert!(parse_reply(b"").is_err());
    }
}
