//! Finding the container engine and starting a test's own PostgreSQL and broker containers.

use std::any::Any;
use std::io::{Read, Write};
use std::time::Duration;

use testcontainers_modules::testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{GenericImage, ImageExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The images `./dev images` builds (containers/*.Containerfile); the broker's tag is `NISSHI_VERSION` in
/// `dev`.
pub const LOCAL_POSTGRES: (&str, &str) = ("localhost/concert-postgres", "15");
pub const LOCAL_BROKER: (&str, &str) = ("localhost/concert-nisshi", "0.8.1");

/// One test's containers at a time: each test starts two containers and a stack, on two cores.
static ONE_AT_A_TIME: Semaphore = Semaphore::const_new(1);

/// A test's own servers; dropping it removes the containers (after the stack, declared later, is gone).
pub struct Servers {
    /// The PostgreSQL server's maintenance database.
    pub admin_database_url: String,
    pub kafka_brokers: String,
    _containers: Vec<Box<dyn Any + Send>>,
    _turn: SemaphorePermit<'static>,
}

/// Starts this test's PostgreSQL and broker containers, or `None` (with a message) when no container engine
/// answers and `CONTAINER_TESTS` is not set.
pub async fn servers(test: &str) -> Option<Servers> {
    let host = docker_host();
    if let Err(why) = engine_answers(&host) {
        assert!(
            std::env::var_os("CONTAINER_TESTS").is_none(),
            "CONTAINER_TESTS is set but no container engine answers at {host}: {why} \
             (./dev images && ./dev podman start, then export DOCKER_HOST=unix://$PWD/.dev/podman.sock)"
        );
        // Straight to stderr, past the test harness's capture, so a plain `cargo test` shows it.
        let _ = writeln!(
            std::io::stderr().lock(),
            "skipping {test}: no container engine answers at {host} ({why}); set DOCKER_HOST to a \
             Docker API (./dev podman start) and CONTAINER_TESTS=1 to run these tests"
        );
        return None;
    }
    concert_tests::init_tracing();
    let turn = ONE_AT_A_TIME.acquire().await.expect("never closed");
    let registry = match std::env::var("CONTAINER_IMAGES").as_deref() {
        Ok("registry") => true,
        Ok("local") | Err(_) => false,
        Ok(other) => panic!("CONTAINER_IMAGES must be local or registry, not {other}"),
    };
    let started = if registry {
        registry_servers().await
    } else {
        local_servers().await
    };
    let (admin_database_url, kafka_brokers, containers) = started.unwrap_or_else(|err| {
        panic!(
            "starting the {} containers through {host}: {err:#}{}",
            if registry { "registry's" } else { "local" },
            if registry {
                ""
            } else {
                " (are the images built? ./dev images)"
            }
        )
    });
    Some(Servers {
        admin_database_url,
        kafka_brokers,
        _containers: containers,
        _turn: turn,
    })
}

type Started = anyhow::Result<(String, String, Vec<Box<dyn Any + Send>>)>;

/// PostgreSQL 15 and nisshi from the images built here. The broker advertises the host port it is
/// published on, chosen before it starts (clients reach it from the host at 127.0.0.1:that port).
async fn local_servers() -> Started {
    // Host ports chosen here and mapped explicitly: podman's Docker API does not publish an image's exposed
    // ports for testcontainers' "publish all" request.
    let pg_port = concert_tests::procs::free_port();
    let pg = GenericImage::new(LOCAL_POSTGRES.0, LOCAL_POSTGRES.1)
        // The entrypoint creates no database first (no POSTGRES_DB), so this line is the real server's.
        .with_wait_for(WaitFor::message_on_stderr(
            "database system is ready to accept connections",
        ))
        // Throwaway data: no fsync. Room for a stack's pools next to the test's own.
        .with_cmd(["postgres", "-c", "fsync=off", "-c", "max_connections=200"])
        .with_mapped_port(pg_port, 5432.tcp())
        .with_startup_timeout(Duration::from_secs(120))
        .start()
        .await?;
    let port = concert_tests::procs::free_port();
    let broker = GenericImage::new(LOCAL_BROKER.0, LOCAL_BROKER.1)
        .with_env_var("ADVERTISED_LISTENER_URL", format!("tcp://127.0.0.1:{port}"))
        .with_mapped_port(port, 9092.tcp())
        // As ./dev test runs nisshi: a group forms 100 ms after its first member joins.
        .with_cmd(["--group-initial-rebalance-delay", "100ms"])
        .with_startup_timeout(Duration::from_secs(60))
        .start()
        .await?;
    let brokers = format!("127.0.0.1:{port}");
    broker_answers(&brokers, Duration::from_secs(60)).await?;
    let db = format!("postgres://postgres@127.0.0.1:{pg_port}/postgres");
    Ok((db, brokers, vec![Box::new(pg), Box::new(broker)]))
}

/// Today's path of `concert_tests::env` on a machine that can pull: the registry's PostgreSQL and Apache
/// Kafka (KRaft) through testcontainers-modules.
async fn registry_servers() -> Started {
    let (db, brokers, (pg, kafka)) = concert_tests::env::start_registry_servers().await?;
    Ok((db, brokers, vec![Box::new(pg), Box::new(kafka)]))
}

/// Waits until the broker answers a Kafka ApiVersions request (v0, no client id), as the image's health
/// check does: a published port accepts connections before the broker inside listens.
async fn broker_answers(brokers: &str, within: Duration) -> anyhow::Result<()> {
    const API_VERSIONS_V0: [u8; 14] = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(brokers).await?;
            stream.write_all(&API_VERSIONS_V0).await?;
            let mut size = [0u8; 4];
            stream.read_exact(&mut size).await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(_)) | Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Err(err)) => return Err(err.context("the broker did not answer ApiVersions")),
            Err(_) => anyhow::bail!("the broker did not answer ApiVersions within {within:?}"),
        }
    }
}

/// The Docker API testcontainers will use: `DOCKER_HOST`, else Docker's default socket.
fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// Whether a Docker API answers `GET /version` at `host` (a unix socket or tcp://host:port).
fn engine_answers(host: &str) -> Result<(), String> {
    let request = b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n";
    let timeout = Some(Duration::from_secs(5));
    let mut answer = Vec::new();
    let result = if let Some(path) = host.strip_prefix("unix://") {
        std::os::unix::net::UnixStream::connect(path).and_then(|mut s| {
            s.set_read_timeout(timeout)?;
            s.write_all(request)?;
            s.read_to_end(&mut answer)
        })
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        std::net::TcpStream::connect(addr).and_then(|mut s| {
            s.set_read_timeout(timeout)?;
            s.write_all(request)?;
            s.read_to_end(&mut answer)
        })
    } else {
        return Err(format!("unsupported DOCKER_HOST {host}"));
    };
    result.map_err(|err| err.to_string())?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
    if head.starts_with("HTTP/1.") && head.contains(" 200") {
        Ok(())
    } else {
        Err(format!("GET /version answered {head:?}"))
    }
}
