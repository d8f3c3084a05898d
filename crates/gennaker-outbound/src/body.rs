//! Reading a response body up to a cap.

/// A response body, cut at a cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CappedBody {
    /// The bytes read: the whole body, or its first `max` bytes.
    pub bytes: Vec<u8>,
    /// Whether the body was longer than the cap (the rest was never read).
    pub truncated: bool,
}

/// Streams `response`'s body and stops at `max` bytes, so a huge (or endless) body
/// costs at most `max` bytes of memory; the connection is dropped with the rest unread.
pub async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<CappedBody, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = max.saturating_sub(bytes.len());
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(CappedBody {
                bytes,
                truncated: true,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(CappedBody {
        bytes,
        truncated: false,
    })
}
