//! The node's side of the learning worker ([`mc_learn_core::worker`]).
//!
//! `mc-node` does not link libtorch: an idle node stays small and starts in
//! milliseconds. Model work goes to one `mc-learn-worker` process, started
//! on the first job and stopped once it has been idle for
//! [`WorkerConfig::idle`], so libtorch's memory goes back when training is
//! over. Jobs run one at a time, in the order they arrive.
//!
//! A worker that dies mid-job (a crash, the OOM killer, a SIGKILL) costs
//! the job's time, not the node: the job is sent again to a fresh worker, up
//! to [`WorkerConfig::attempts`] times in all, and only then does the caller
//! see [`WorkerError::Died`]. A worker that gives no answer within
//! [`WorkerConfig::job_timeout`] (hung, or stuck on a broken device) is
//! killed and counts as one that died.

use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use mc_learn_core::worker::{FrameError, Job, Reply, read_frame, write_frame};
use serde::Serialize;

/// The worker binary's file name, looked for next to `mc-node`.
pub const WORKER_BINARY: &str = "mc-learn-worker";

/// How long an idle worker is kept by default: long enough to carry a
/// campaign from round to round, short enough to give the memory back soon.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(20);

/// Tries per job by default (the first and two retries).
pub const DEFAULT_ATTEMPTS: u32 = 3;

/// How long one job may go unanswered by default before its worker is
/// killed and the job retried: ten minutes, some fifty times the longest
/// job the tests and benchmarks run (custom training of 5,000 rows for 60
/// epochs takes 2.6 s on the development VM), so only a hung worker hits it.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// How the worker is run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The worker binary.
    pub program: PathBuf,
    /// Idle time after which the worker is stopped.
    pub idle: Duration,
    /// Tries per job when the worker dies.
    pub attempts: u32,
    /// Longest wait for one job's answer; then the worker is killed.
    pub job_timeout: Duration,
}

impl WorkerConfig {
    /// `program`, or the `mc-learn-worker` next to the running executable,
    /// with the default idle time and attempts.
    pub fn new(program: Option<PathBuf>) -> Self {
        let program = program.unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join(WORKER_BINARY)))
                .unwrap_or_else(|| PathBuf::from(WORKER_BINARY))
        });
        Self {
            program,
            idle: DEFAULT_IDLE,
            attempts: DEFAULT_ATTEMPTS,
            job_timeout: DEFAULT_JOB_TIMEOUT,
        }
    }
}

/// Why a job got no answer.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker binary could not be started.
    #[error(
        "cannot start the learning worker {program}: {error} (build it with `cargo build -p mc-node`, \
         or set `learn_worker` in the config file or --learn-worker)"
    )]
    Start {
        /// The binary.
        program: String,
        /// Why.
        error: std::io::Error,
    },
    /// Every attempt ended with the worker gone.
    #[error("the learning worker died {attempts} times on this {job} job; last: {last}")]
    Died {
        /// The job's kind.
        job: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

/// Counters of `GET /v1/learn/worker`.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    /// The binary.
    pub program: String,
    /// The running worker's process id, if one is up.
    pub pid: Option<u32>,
    /// Whether a job is running on it now.
    pub busy: bool,
    /// The running worker's resident set size in bytes (Linux only).
    pub rss_bytes: Option<u64>,
    /// Jobs answered.
    pub jobs: u64,
    /// Workers started.
    pub started: u64,
    /// Workers that died mid-job (those killed for a timeout included).
    pub died: u64,
    /// Workers killed for leaving a job unanswered past `job_timeout_ms`.
    pub timed_out: u64,
    /// Workers stopped for being idle.
    pub stopped_idle: u64,
    /// Idle time after which the worker is stopped, in ms.
    pub idle_ms: u64,
    /// Longest wait for one job's answer, in ms.
    pub job_timeout_ms: u64,
}

/// The node's learning worker (see the module docs). Cheap to share.
#[derive(Debug, Clone)]
pub struct Worker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: WorkerConfig,
    state: Mutex<State>,
    wake: Condvar,
    pid: AtomicU32,
    busy: AtomicBool,
    jobs: AtomicU64,
    started: AtomicU64,
    died: AtomicU64,
    timed_out: AtomicU64,
    stopped_idle: AtomicU64,
}

#[derive(Debug)]
struct State {
    running: Option<Running>,
    last_used: Instant,
}

#[derive(Debug)]
struct Running {
    /// Shared with the job's watchdog, which kills it on a timeout.
    child: Arc<Mutex<Child>>,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Running {
    fn stop(self) {
        drop(self.stdin); // a worker between jobs exits on end of input
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Worker {
    /// A worker handle; no process starts until the first job. A thread
    /// stops the process once it has been idle for `config.idle`.
    pub fn new(config: WorkerConfig) -> Self {
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                running: None,
                last_used: Instant::now(),
            }),
            wake: Condvar::new(),
            pid: AtomicU32::new(0),
            busy: AtomicBool::new(false),
            jobs: AtomicU64::new(0),
            started: AtomicU64::new(0),
            died: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            stopped_idle: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("learn-worker-reaper".into())
            .spawn(move || reap_idle(weak))
            .ok();
        Self { shared }
    }

    /// Runs `job` on the worker, starting one if none is up, and retrying
    /// on a fresh one when it dies.
    pub fn run(&self, job: &Job) -> Result<Reply, WorkerError> {
        let shared = &self.shared;
        let mut state = shared.lock();
        let attempts = shared.config.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            if state.running.is_none() {
                state.running = Some(shared.spawn()?);
            }
            let Some(running) = state.running.as_mut() else {
                continue;
            };
            shared.busy.store(true, Ordering::Relaxed);
            let started = Instant::now();
            let watchdog = Watchdog::arm(&running.child, shared.config.job_timeout);
            let answer = exchange(running, job);
            let timed_out = watchdog.disarm();
            shared.busy.store(false, Ordering::Relaxed);
            tracing::debug!(
                job = job.kind(),
                ms = started.elapsed().as_secs_f64() * 1e3,
                "learning job answered"
            );
            if timed_out {
                shared.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            match answer {
                Ok(reply) => {
                    if timed_out {
                        // Answered as the watchdog fired: the reply stands,
                        // the killed worker is replaced on the next job.
                        if let Some(dead) = state.running.take() {
                            dead.stop();
                        }
                        shared.pid.store(0, Ordering::Relaxed);
                    }
                    state.last_used = Instant::now();
                    shared.jobs.fetch_add(1, Ordering::Relaxed);
                    shared.wake.notify_all();
                    return Ok(reply);
                }
                Err(error) => {
                    last = match timed_out {
                        true => format!(
                            "no answer within {} ms; the worker was killed",
                            shared.config.job_timeout.as_millis()
                        ),
                        false => error.to_string(),
                    };
                    shared.died.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(job = job.kind(), attempt, attempts, %error, "the learning worker died; retrying on a fresh one");
                    if let Some(dead) = state.running.take() {
                        dead.stop();
                    }
                    shared.pid.store(0, Ordering::Relaxed);
                }
            }
        }
        Err(WorkerError::Died {
            job: job.kind(),
            attempts,
            last,
        })
    }

    /// Starts a worker now if none is up, so that the next job does not wait
    /// for libtorch to load (a campaign calls this in round 0, which needs
    /// no model). Does nothing while a job is running.
    pub fn prestart(&self) -> Result<(), WorkerError> {
        let Ok(mut state) = self.shared.state.try_lock() else {
            return Ok(());
        };
        if state.running.is_none() {
            state.running = Some(self.shared.spawn()?);
            state.last_used = Instant::now();
        }
        Ok(())
    }

    /// Counters and the running worker's pid.
    pub fn status(&self) -> WorkerStatus {
        let s = &self.shared;
        let pid = s.pid.load(Ordering::Relaxed);
        WorkerStatus {
            program: s.config.program.display().to_string(),
            pid: (pid != 0).then_some(pid),
            busy: s.busy.load(Ordering::Relaxed),
            rss_bytes: (pid != 0).then(|| rss_of(pid)).flatten(),
            jobs: s.jobs.load(Ordering::Relaxed),
            started: s.started.load(Ordering::Relaxed),
            died: s.died.load(Ordering::Relaxed),
            timed_out: s.timed_out.load(Ordering::Relaxed),
            stopped_idle: s.stopped_idle.load(Ordering::Relaxed),
            idle_ms: u64::try_from(s.config.idle.as_millis()).unwrap_or(u64::MAX),
            job_timeout_ms: u64::try_from(s.config.job_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a State that is still
        // consistent (at worst a dead worker, replaced on the next job).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn(&self) -> Result<Running, WorkerError> {
        let program = &self.config.program;
        let start_error = |error| WorkerError::Start {
            program: program.display().to_string(),
            error,
        };
        let mut child = Command::new(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(start_error)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(start_error(std::io::Error::other("no pipes to the worker")));
        };
        self.started.fetch_add(1, Ordering::Relaxed);
        self.pid.store(child.id(), Ordering::Relaxed);
        tracing::info!(pid = child.id(), program = %program.display(), "started the learning worker");
        Ok(Running {
            child: Arc::new(Mutex::new(child)),
            stdin: BufWriter::new(stdin),
            stdout: BufReader::new(stdout),
        })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = state.running.take() {
            running.stop();
        }
    }
}

/// Kills the worker if the job it guards is not over within its timeout.
struct Watchdog {
    done: mpsc::Sender<()>,
    fired: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn arm(child: &Arc<Mutex<Child>>, timeout: Duration) -> Self {
        let (done, over) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("learn-worker-watchdog".into())
            .spawn({
                let child = Arc::clone(child);
                let fired = Arc::clone(&fired);
                move || {
                    if let Err(RecvTimeoutError::Timeout) = over.recv_timeout(timeout) {
                        fired.store(true, Ordering::Relaxed);
                        let mut child = child.lock().unwrap_or_else(|p| p.into_inner());
                        tracing::warn!(
                            pid = child.id(),
                            ms = timeout.as_millis() as u64,
                            "the learning worker left a job unanswered; killing it"
                        );
                        let _ = child.kill();
                    }
                }
            })
            .ok();
        Self {
            done,
            fired,
            thread,
        }
    }

    /// Ends the watch; whether it fired.
    fn disarm(self) -> bool {
        let Self {
            done,
            fired,
            thread,
        } = self;
        drop(done);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        fired.load(Ordering::Relaxed)
    }
}

fn exchange(running: &mut Running, job: &Job) -> Result<Reply, FrameError> {
    write_frame(&mut running.stdin, job)?;
    read_frame(&mut running.stdout)?.ok_or_else(|| {
        FrameError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the worker closed its output",
        ))
    })
}

/// The reaper thread: stops the worker once it has been idle long enough;
/// ends when the last [`Worker`] handle is dropped.
fn reap_idle(shared: Weak<Shared>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let idle = s.config.idle;
        let mut state = s.lock();
        let wait = match &state.running {
            Some(_) => {
                let since = state.last_used.elapsed();
                if since >= idle {
                    if let Some(running) = state.running.take() {
                        tracing::info!(
                            idle_ms = since.as_millis() as u64,
                            "stopping the idle learning worker"
                        );
                        running.stop();
                    }
                    s.pid.store(0, Ordering::Relaxed);
                    s.stopped_idle.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                idle - since
            }
            None => idle,
        };
        // Wake at the deadline, on a finished job, or at the latest every
        // second to notice that the handles are gone.
        let (guard, _) = s
            .wake
            .wait_timeout(state, wait.min(Duration::from_secs(1)))
            .unwrap_or_else(|p| p.into_inner());
        state = guard;
        drop(state);
    }
}

/// `VmRSS` of `pid` from `/proc`, in bytes.
fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}
