//! The WASI that Rust's std imports, granted nothing.
//!
//! A component built by `cargo` for `wasm32-wasip2` imports `wasi:cli`,
//! `wasi:filesystem`, `wasi:sockets` and friends whether it uses them or not. They are
//! linked to a context that has no preopened directory, no environment, no
//! arguments, no network and an empty stdin. Clocks are granted: a procedure waits
//! between retries. The guest's stdout and stderr are captured in a bounded buffer
//! so a panic message can be shown; what exceeds the bound is dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// Bytes of guest output kept; the rest is dropped, never an error to the guest.
pub const OUTPUT_LIMIT: usize = 64 << 10;

/// Builds the deny-all WASI context and the capture of the guest's output.
pub fn deny_all() -> (WasiCtx, CapturedOutput) {
    let output = CapturedOutput::default();
    let ctx = WasiCtxBuilder::new()
        .stdout(output.clone())
        .stderr(output.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    (ctx, output)
}

/// The guest's stdout and stderr, interleaved, at most [`OUTPUT_LIMIT`] bytes.
#[derive(Clone, Default)]
pub struct CapturedOutput(Arc<Mutex<Vec<u8>>>);

impl CapturedOutput {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("output lock")).into_owned()
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut kept = self.0.lock().expect("output lock");
        let room = OUTPUT_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..buf.len().min(room)]);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
