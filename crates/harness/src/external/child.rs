//! The external method's process: requests out on stdin, answers matched by id from stdout,
//! stderr kept as a short tail for error messages. The first broken line, early exit or
//! missed deadline ends every waiting request with one message that names the method, the
//! line or request, and what the method last wrote to stderr.

use super::protocol::{FromMethod, PROTOCOL_VERSION, ToMethod};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::oneshot;

/// Lines of stderr kept for error messages.
const STDERR_TAIL: usize = 20;
/// A quoted protocol line is cut to this many characters in an error.
const QUOTE: usize = 200;

type Waiter = oneshot::Sender<Result<FromMethod, String>>;

#[derive(Default)]
struct Shared {
    pending: HashMap<u64, Waiter>,
    /// Why the method can no longer answer, once it cannot.
    dead: Option<String>,
    ready: Option<oneshot::Sender<Result<u32, String>>>,
}

pub struct Child {
    what: String,
    stdin: tokio::sync::Mutex<ChildStdin>,
    shared: Arc<Mutex<Shared>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    next_id: AtomicU64,
    timeout: Duration,
    // Held so the process is killed when the method is dropped (kill_on_drop).
    _process: tokio::process::Child,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn quote(line: &str) -> String {
    let n = line.chars().count();
    if n <= QUOTE {
        format!("{line:?}")
    } else {
        let cut: String = line.chars().take(QUOTE).collect();
        format!("{cut:?}… ({n} characters)")
    }
}

impl Child {
    /// Starts `command` with `env` added, sends `hello` and waits for `ready`.
    pub async fn spawn(
        label: &str,
        command: &[String],
        cwd: &std::path::Path,
        env: &[(String, String)],
        hello: &ToMethod,
        timeout: Duration,
    ) -> Result<Self, String> {
        let what = format!("external method {label:?} ({})", command.join(" "));
        let (program, args) = command
            .split_first()
            .ok_or_else(|| format!("{what}: `command` is empty"))?;
        let mut process = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{what}: cannot start: {e}"))?;
        let stdin = process.stdin.take().expect("stdin is piped");
        let stdout = process.stdout.take().expect("stdout is piped");
        let stderr_pipe = process.stderr.take().expect("stderr is piped");
        let (ready_tx, ready_rx) = oneshot::channel();
        let shared = Arc::new(Mutex::new(Shared {
            ready: Some(ready_tx),
            ..Shared::default()
        }));
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        {
            let stderr = stderr.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr_pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut t = lock(&stderr);
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        {
            let shared = shared.clone();
            let what = what.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                let mut n = 0usize;
                let why = loop {
                    n += 1;
                    let line = match lines.next_line().await {
                        Ok(Some(l)) => l,
                        Ok(None) => break "closed its stdout (exited?)".to_string(),
                        Err(e) => break format!("stdout line {n}: {e}"),
                    };
                    if line.trim().is_empty() {
                        continue;
                    }
                    let msg: FromMethod = match serde_json::from_str(&line) {
                        Ok(m) => m,
                        Err(e) => {
                            break format!(
                                "stdout line {n}: not a protocol message ({e}): {}",
                                quote(&line)
                            );
                        }
                    };
                    let mut s = lock(&shared);
                    match msg {
                        FromMethod::Ready { protocol } => match s.ready.take() {
                            Some(tx) => {
                                let _ = tx.send(Ok(protocol));
                            }
                            None => break format!("stdout line {n}: a second `ready`"),
                        },
                        FromMethod::Error { id: None, message } => {
                            break format!("stdout line {n}: the method reported: {message}");
                        }
                        msg => {
                            let id = msg.id().expect("every other answer has an id");
                            match s.pending.remove(&id) {
                                Some(tx) => {
                                    let _ = tx.send(Ok(msg));
                                }
                                None => {
                                    break format!(
                                        "stdout line {n}: answer to id {id}, which is not waiting"
                                    );
                                }
                            }
                        }
                    }
                };
                let mut s = lock(&shared);
                let why = format!("{what}: {why}");
                for (_, tx) in s.pending.drain() {
                    let _ = tx.send(Err(why.clone()));
                }
                if let Some(tx) = s.ready.take() {
                    let _ = tx.send(Err(why.clone()));
                }
                s.dead = Some(why);
            });
        }
        let child = Self {
            what,
            stdin: tokio::sync::Mutex::new(stdin),
            shared,
            stderr,
            next_id: AtomicU64::new(1),
            timeout,
            _process: process,
        };
        child.write(hello).await?;
        let protocol = match tokio::time::timeout(timeout, ready_rx).await {
            Ok(Ok(Ok(p))) => p,
            Ok(Ok(Err(why))) => return Err(child.with_stderr(why)),
            Ok(Err(_)) => return Err(child.with_stderr(format!("{}: gone", child.what))),
            Err(_) => {
                return Err(child.with_stderr(format!(
                    "{}: no `ready` within {} s of `hello`",
                    child.what,
                    timeout.as_secs()
                )));
            }
        };
        if protocol != PROTOCOL_VERSION {
            return Err(format!(
                "{}: speaks protocol {protocol}; this harness speaks {PROTOCOL_VERSION}",
                child.what
            ));
        }
        Ok(child)
    }

    /// `why` followed by the last lines the method wrote to stderr.
    fn with_stderr(&self, why: String) -> String {
        let tail = lock(&self.stderr);
        if tail.is_empty() {
            format!("{why} (nothing on stderr)")
        } else {
            let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
            format!("{why}; its stderr ends:\n  {}", lines.join("\n  "))
        }
    }

    async fn write(&self, msg: &ToMethod) -> Result<(), String> {
        let mut line = serde_json::to_string(msg).expect("protocol messages serialise");
        line.push('\n');
        let mut stdin = self.stdin.lock().await;
        if let Err(e) = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        }
        .await
        {
            let dead = lock(&self.shared).dead.clone();
            return Err(self.with_stderr(
                dead.unwrap_or_else(|| format!("{}: writing to its stdin: {e}", self.what)),
            ));
        }
        Ok(())
    }

    /// Sends the request `make(id)` builds and waits for the answer with that id.
    pub async fn request(&self, make: impl FnOnce(u64) -> ToMethod) -> Result<FromMethod, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut s = lock(&self.shared);
            if let Some(why) = &s.dead {
                return Err(self.with_stderr(why.clone()));
            }
            s.pending.insert(id, tx);
        }
        self.write(&make(id)).await?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(Ok(FromMethod::Error { message, .. }))) => Err(self.with_stderr(format!(
                "{}: request {id}: the method reported: {message}",
                self.what
            ))),
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(why))) => Err(self.with_stderr(why)),
            Ok(Err(_)) => Err(self.with_stderr(format!("{}: request {id} dropped", self.what))),
            Err(_) => {
                lock(&self.shared).pending.remove(&id);
                Err(self.with_stderr(format!(
                    "{}: no answer to request {id} within {} s (raise `timeout_s` if it is slow)",
                    self.what,
                    self.timeout.as_secs()
                )))
            }
        }
    }
}
