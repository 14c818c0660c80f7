//! The client side of the management socket, used by the `rewind` CLI (and
//! usable by any Rust program): connect, call a method, get its result or
//! its error.
//!
//! Invariant: a response is matched to its request by id; anything else on
//! the socket is a [`ClientError::Protocol`], never a wrong result.

use super::error::RpcError;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a call did not return a result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the service at {path}: {source} (is `rewind serve` running with this data directory?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the service at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the service at {path} answered something unexpected: {detail}")]
    Protocol { path: PathBuf, detail: String },
    /// The method's own error.
    #[error("{0}")]
    Rpc(RpcError),
}

/// A connection to the management socket.
#[derive(Debug)]
pub struct RpcClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl RpcClient {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<RpcClient, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(RpcClient {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            next_id: 1,
        })
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Calls `method` with `params`; waits at most `timeout` (None: forever).
    pub fn call_with_timeout(
        &mut self,
        method: &str,
        params: Value,
        timeout: Option<Duration>,
    ) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let stream = self.reader.get_mut();
        stream.set_read_timeout(timeout).map_err(|e| self.io(e))?;
        let sent = writeln!(self.reader.get_mut(), "{request}");
        sent.map_err(|e| self.io(e))?;
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(|e| self.io(e))?;
        let protocol = |detail: String| ClientError::Protocol {
            path: self.path.clone(),
            detail,
        };
        if n == 0 {
            return Err(protocol("the connection closed without a response".into()));
        }
        let mut response: Value =
            serde_json::from_str(&line).map_err(|e| protocol(format!("not JSON ({e})")))?;
        if let Some(error) = response.get_mut("error") {
            let e: RpcError = serde_json::from_value(error.take())
                .map_err(|e| protocol(format!("a malformed error ({e})")))?;
            return Err(ClientError::Rpc(e));
        }
        if response.get("id") != Some(&json!(id)) {
            return Err(protocol(format!("a response to another request: {line}")));
        }
        response
            .get_mut("result")
            .map(Value::take)
            .ok_or_else(|| protocol("a response without a result".into()))
    }

    /// Calls `method` with `params`, waiting up to 60 s.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.call_with_timeout(method, params, Some(Duration::from_secs(60)))
    }
}
