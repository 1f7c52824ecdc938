//! An S3 server for the tests: s3s-fs over hyper on 127.0.0.1, with SigV4
//! authentication, started in-process on its own runtime, and able to inject
//! faults (intermittent 500/503 answers, or going away after some uploads).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

/// Access key id the server accepts.
pub const ACCESS_KEY: &str = "capbill-test-key";
/// Secret key the server accepts.
pub const SECRET_KEY: &str = "capbill-test-secret-0123456789";

/// Fault injection switches, shared with the serving task.
#[derive(Default)]
pub struct Faults {
    /// Answer every n-th request with a 503 or 500 (0 = never), but never
    /// an operation's last attempt: the errors are intermittent for every
    /// operation, not only on average (with concurrent uploads, one
    /// operation's attempts could otherwise all land on an n-th request).
    pub fail_every: AtomicUsize,
    /// Requests seen.
    pub requests: AtomicUsize,
    /// Requests answered with an injected error.
    pub injected: AtomicUsize,
    /// PUT requests allowed before the server "goes away" (0 = unlimited).
    pub puts_allowed: AtomicUsize,
    /// PUT requests seen.
    pub puts: AtomicUsize,
    /// When set, every request is dropped without an answer.
    pub gone: AtomicBool,
    /// GET requests for a byte range that name the object's version (`If-Match`).
    pub ranged_gets: AtomicUsize,
    /// GET requests for a whole object that name the object's version (`If-Match`).
    pub whole_version_gets: AtomicUsize,
    /// When set, a create-only PUT (`If-None-Match: *`) overwrites, as on
    /// Garage 2.5, which ignores the header: the object is removed before
    /// the request is served (the header itself is signed and stays).
    pub ignore_if_none_match: AtomicBool,
    /// The server's root folder (a bucket per folder).
    pub root: std::sync::OnceLock<PathBuf>,
}

/// A running server; stops when dropped.
pub struct S3Server {
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
    /// Folder holding the buckets (`root/bucket/key`).
    pub root: tempfile::TempDir,
    /// Fault switches.
    pub faults: Arc<Faults>,
    _server: Loopback,
}

impl S3Server {
    /// Connection settings of a client of this server, with its keys.
    pub fn settings(&self) -> capbill::storage::s3::S3Settings {
        capbill::storage::s3::S3Settings {
            endpoint_url: Some(self.endpoint.clone()),
            region: Some("us-east-1".to_owned()),
            force_path_style: true,
            access_key_id: Some(ACCESS_KEY.to_owned()),
            secret_access_key: Some(capbill::storage::s3::Secret::new(SECRET_KEY)),
            ..Default::default()
        }
    }

    /// Starts a server with one empty bucket per name.
    pub fn start(buckets: &[&str]) -> S3Server {
        let root = tempfile::tempdir().unwrap();
        for b in buckets {
            std::fs::create_dir_all(root.path().join(b)).unwrap();
        }
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let faults = Arc::new(Faults::default());
        faults.root.set(root.path().to_path_buf()).expect("set once");
        let f = faults.clone();
        let server = Loopback::start(move |req| {
            let (svc, f) = (service.clone(), f.clone());
            async move { handle(&svc, &f, req).await }
        });
        S3Server { endpoint: format!("http://{}", server.addr), root, faults, _server: server }
    }

    /// The folder of a bucket.
    pub fn bucket(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Environment that points capbill at this server with valid credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("CAPBILL_S3_ENDPOINT_URL", self.endpoint.clone()),
            ("CAPBILL_S3_FORCE_PATH_STYLE", "true".to_owned()),
            ("CAPBILL_S3_MAX_ATTEMPTS", "4".to_owned()),
            ("CAPBILL_S3_CONNECT_TIMEOUT_SECS", "2".to_owned()),
            ("CAPBILL_S3_OPERATION_TIMEOUT_SECS", "20".to_owned()),
            // During October's grace period: the month is still provisional.
            ("CAPBILL_NOW", "2026-11-02T02:30:00Z".to_owned()),
        ]
    }

    /// Puts a local file tree into a bucket under `prefix` (written through the
    /// server's own storage layout, which is how s3s-fs stores objects).
    pub fn upload_tree(&self, bucket: &str, prefix: &str, from: &Path) {
        crate::util::copy_tree(from, &self.bucket(bucket).join(prefix));
    }
}

/// A hyper server on 127.0.0.1 (a free port), on its own thread and
/// runtime, answering each request with `handler`; stops when dropped.
pub struct Loopback {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Loopback {
    /// Starts serving.
    pub fn start<H, F, B, E>(handler: H) -> Loopback
    where
        H: Fn(http::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: std::future::Future<Output = Result<http::Response<B>, E>> + Send + 'static,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let socket = tokio::select! {
                        r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                        _ = &mut rx => break,
                    };
                    let handler = handler.clone();
                    let service = hyper::service::service_fn(handler);
                    tokio::spawn(async move {
                        let _ = ConnBuilder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(socket), service)
                            .await;
                    });
                }
            });
        });
        Loopback { addr, shutdown: Some(tx), thread: Some(thread) }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(
    svc: &s3s::service::S3Service,
    f: &Faults,
    req: http::Request<Incoming>,
) -> Result<s3s::HttpResponse, s3s::HttpError> {
    let n = f.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if f.ignore_if_none_match.load(Ordering::SeqCst)
        && req.method() == http::Method::PUT
        && req.headers().contains_key("if-none-match")
        && let Some(root) = f.root.get()
    {
        // Path-style `/bucket/key`; the tests' keys need no decoding.
        let _ = std::fs::remove_file(root.join(req.uri().path().trim_start_matches('/')));
    }
    let headers = req.headers();
    if req.method() == http::Method::GET && headers.contains_key("if-match") {
        match headers.contains_key("range") {
            true => f.ranged_gets.fetch_add(1, Ordering::SeqCst),
            false => f.whole_version_gets.fetch_add(1, Ordering::SeqCst),
        };
    }
    if req.method() == http::Method::PUT || req.method() == http::Method::POST {
        let puts = f.puts.fetch_add(1, Ordering::SeqCst) + 1;
        let allowed = f.puts_allowed.load(Ordering::SeqCst);
        if allowed > 0 && puts > allowed {
            f.gone.store(true, Ordering::SeqCst);
        }
    }
    if f.gone.load(Ordering::SeqCst) {
        return Err(s3s::HttpError::new(Box::new(std::io::Error::other("server gone"))));
    }
    let every = f.fail_every.load(Ordering::SeqCst);
    if every > 0 && n.is_multiple_of(every) && !last_attempt(req.headers()) {
        f.injected.fetch_add(1, Ordering::SeqCst);
        let (status, code) = if (n / every).is_multiple_of(2) { (503, "SlowDown") } else { (500, "InternalError") };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
        );
        return Ok(http::Response::builder().status(status).body(s3s::Body::from(body)).unwrap());
    }
    hyper::service::Service::call(svc, req).await
}

/// Whether a request is its operation's last attempt, as the AWS SDK says in
/// `amz-sdk-request: attempt=N; max=M` (false without that header).
fn last_attempt(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers.get("amz-sdk-request").and_then(|v| v.to_str().ok()) else { return false };
    let field = |name: &str| {
        value.split(';').find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix('=')?.parse::<u32>().ok())
    };
    matches!((field("attempt"), field("max")), (Some(a), Some(m)) if a >= m)
}
