//! A package upload sent in chunks, drawing a progress bar on a terminal.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use indicatif::{ProgressBar, ProgressStyle};

/// How much is handed to the connection at a time: small enough that the bar moves.
const CHUNK: usize = 64 * 1024;

pub struct Upload {
    data: Bytes,
    sent: usize,
    bar: Option<ProgressBar>,
}

impl Upload {
    /// An upload of `data`; with `bar`, a progress bar on stderr (when it is a
    /// terminal: the caller decides).
    pub fn new(data: Bytes, bar: bool) -> Self {
        let bar = bar.then(|| {
            let b = ProgressBar::new(data.len() as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "   uploading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b
        });
        Upload { data, sent: 0, bar }
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.sent >= this.data.len() {
            if let Some(b) = this.bar.take() {
                b.finish_and_clear();
            }
            return Poll::Ready(None);
        }
        let end = (this.sent + CHUNK).min(this.data.len());
        let chunk = this.data.slice(this.sent..end);
        this.sent = end;
        if let Some(b) = &this.bar {
            b.set_position(end as u64);
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.data.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn sends_every_byte_in_order_with_an_exact_length() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let upload = Upload::new(Bytes::from(data.clone()), false);
        assert_eq!(upload.size_hint().exact(), Some(200_000));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt.block_on(upload.collect()).unwrap().to_bytes();
        assert_eq!(got.as_ref(), data.as_slice());
    }
}
