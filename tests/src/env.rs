//! Where Postgres and the broker are, and what each test gets of its own: a database (migrated), a topic
//! prefix (topics created), a consumer group id and a token secret.

use std::sync::OnceLock;
use std::time::Duration;

use concert_core::config::Settings;
use concert_core::request_id::RequestIds;
use concert_core::token::TokenSigner;
use concert_core::topics::Topics;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// Partition counts of a test's topics: more command partitions than the default (2 and 2), so that in
/// the tests that run three workers every worker owns some, and a killed or frozen one has partitions to
/// hand over. `concert-worker topics` with the defaults is tested on its own (`it::operations`).
pub const TEST_PARTITIONS: concert_core::topics::Partitions = concert_core::topics::Partitions {
    joins: 4,
    bookings: 8,
    replies: 1,
};

/// The admin token every stack is configured with (in process and spawned).
pub const ADMIN_TOKEN: &str = "test-admin-token-of-24-bytes-or-more";

/// Connections each in-process or spawned service instance may open; small enough that four stacks of four
/// instances stay within Postgres' default of 100 connections.
pub const DB_CONNECTIONS_PER_INSTANCE: u32 = 5;

/// The shared servers: from `DATABASE_URL` and `KAFKA_BROKERS` when set, else containers started once.
#[derive(Debug, Clone)]
pub struct Infra {
    /// A URL of the Postgres server, pointing at its maintenance database `postgres`.
    pub admin_database_url: String,
    pub kafka_brokers: String,
}

/// The servers, found or started on first use and shared by every test of the process.
pub fn infra() -> &'static Infra {
    static INFRA: OnceLock<Infra> = OnceLock::new();
    INFRA.get_or_init(|| {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (database_url, kafka_brokers) =
            match (from_env("DATABASE_URL"), from_env("KAFKA_BROKERS")) {
                (Some(db), Some(brokers)) => (db, brokers),
                (db, brokers) => {
                    let started =
                        containers::start().expect("starting Postgres and Kafka containers");
                    (db.unwrap_or(started.0), brokers.unwrap_or(started.1))
                }
            };
        Infra {
            admin_database_url: with_database(&database_url, "postgres"),
            kafka_brokers,
        }
    })
}

/// The same server URL with another database name.
pub fn with_database(url: &str, database: &str) -> String {
    let mut parsed = reqwest::Url::parse(url).expect("DATABASE_URL is a URL");
    parsed.set_path(&format!("/{database}"));
    parsed.to_string()
}

mod containers {
    //! Only used where `DATABASE_URL`/`KAFKA_BROKERS` are unset and a Docker engine is available.

    use std::time::Duration;

    use testcontainers_modules::kafka::apache;
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};

    /// Starts Postgres and Apache Kafka (KRaft) and returns (database URL, brokers). The containers live on
    /// a thread of their own for as long as the test process, because every test has its own runtime.
    pub fn start() -> anyhow::Result<(String, String)> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                match start_registry_servers().await {
                    Ok((db, brokers, containers)) => {
                        let urls = (db, brokers);
                        let _ = tx.send(Ok(urls));
                        // Keep the containers (and the runtime their handles belong to) until the process ends.
                        let _keep = containers;
                        std::future::pending::<()>().await;
                    }
                    Err(err) => {
                        let _ = tx.send(Err(err));
                    }
                }
            });
        });
        rx.recv_timeout(Duration::from_secs(300))?
    }

    /// The registry's PostgreSQL (15-alpine, trust auth) and Apache Kafka (KRaft) through
    /// testcontainers-modules: (database URL, brokers, the containers, which stop when dropped).
    pub async fn start_registry_servers() -> anyhow::Result<(
        String,
        String,
        (ContainerAsync<Postgres>, ContainerAsync<apache::Kafka>),
    )> {
        let pg = Postgres::default()
            .with_host_auth()
            .with_tag("15-alpine")
            .start()
            .await?;
        let kafka = apache::Kafka::default().start().await?;
        let db = format!(
            "postgres://postgres@{}:{}/postgres",
            pg.get_host().await?,
            pg.get_host_port_ipv4(5432).await?
        );
        let brokers = format!(
            "127.0.0.1:{}",
            kafka.get_host_port_ipv4(apache::KAFKA_PORT).await?
        );
        Ok((db, brokers, (pg, kafka)))
    }
}

pub use containers::start_registry_servers;

/// What one test owns on the shared servers. Dropping it drops the database and deletes the topics.
pub struct TestEnv {
    /// Settings pointing at this test's database and topics, with this test's token secret.
    pub settings: Settings,
    /// A pool on this test's database, for assertions and setup.
    pub db: PgPool,
    pub topics: Topics,
    /// The consumer group of this test's workers.
    pub group_id: String,
    db_name: String,
    /// The maintenance database of the server this test's database lives on.
    admin_database_url: String,
}

impl TestEnv {
    /// Creates and migrates a database and creates the topics on the shared broker.
    pub async fn new() -> Self {
        let infra = infra();
        Self::on(&infra.admin_database_url, &infra.kafka_brokers).await
    }

    /// Like [`new`](Self::new), with the topics on these brokers (e.g. a test's own
    /// [`PrivateBroker`](crate::broker::PrivateBroker)) instead of the shared one.
    pub async fn on_brokers(kafka_brokers: &str) -> Self {
        Self::on(&infra().admin_database_url, kafka_brokers).await
    }

    /// Like [`new`](Self::new), with the database on another server (`admin_database_url` names its
    /// maintenance database), e.g. a [`PrivatePostgres`](crate::pg_server::PrivatePostgres) the test restarts.
    pub async fn on_server(admin_database_url: &str) -> Self {
        Self::on(admin_database_url, &infra().kafka_brokers).await
    }

    /// A database on the server of `admin_database_url` and topics on `kafka_brokers`.
    pub async fn on(admin_database_url: &str, kafka_brokers: &str) -> Self {
        crate::logs::init_tracing();
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("concert_test_{id}");
        let mut admin = PgConnection::connect(admin_database_url)
            .await
            .expect("connecting to Postgres");
        sqlx::query(&format!("CREATE DATABASE \"{db_name}\""))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        let _ = admin.close().await;

        let settings = Settings {
            database_url: with_database(admin_database_url, &db_name),
            kafka_brokers: kafka_brokers.to_owned(),
            topic_prefix: format!("t-{id}."),
            token_secret: format!("test-secret-{}", Uuid::new_v4().simple()),
            db_max_connections: DB_CONNECTIONS_PER_INSTANCE,
            kafka_fetch: Default::default(),
            partitions: TEST_PARTITIONS,
        };
        let db = concert_core::db::pool(&settings.database_url, 8).expect("pool");
        concert_core::db::migrate(&db)
            .await
            .expect("migrating the test database");
        let topics = settings.topics();
        let mut attempt = 0;
        while let Err(err) =
            concert_core::kafka::ensure_topics(&settings.kafka_brokers, &topics, 1).await
        {
            attempt += 1;
            assert!(attempt < 5, "creating topics: {err:#}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Self {
            settings,
            db,
            topics,
            group_id: format!("g-{id}"),
            db_name,
            admin_database_url: admin_database_url.to_owned(),
        }
    }

    /// Signs and checks tokens with this test's secret, as the services do.
    pub fn signer(&self) -> TokenSigner {
        TokenSigner::new(self.settings.token_secret.clone().into_bytes())
    }

    /// Issues request ids with this test's secret, as the api does.
    pub fn request_ids(&self) -> RequestIds {
        RequestIds::new(self.settings.token_secret.clone().into_bytes())
    }

    /// The name of this test's database.
    pub fn db_name(&self) -> &str {
        &self.db_name
    }

    /// Drops every connection to this test's database (the services' and the test's own pool's) with
    /// `pg_terminate_backend`, as a database restart would, without touching the shared server or other
    /// tests' databases. Returns how many backends were terminated.
    pub async fn terminate_backends(&self) -> i64 {
        let mut admin = PgConnection::connect(&self.admin_database_url)
            .await
            .expect("connecting to Postgres");
        let terminated: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.db_name)
        .fetch_one(&mut admin)
        .await
        .expect("pg_terminate_backend");
        let _ = admin.close().await;
        terminated
    }

    /// How many partitions one of this test's topics has.
    pub fn partitions(&self, topic: &str) -> i32 {
        self.topics
            .with_partitions()
            .iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, p)| *p)
            .expect("one of the test's topics")
    }

    /// The place in line a queue token names (its `seq`), checked with this test's secret.
    pub fn queue_seq(&self, queue_token: &str) -> i64 {
        let claims = self
            .signer()
            .verify_queue(queue_token)
            .expect("a queue token signed by the service");
        i64::try_from(claims.seq).expect("seq fits i64")
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let admin_url = self.admin_database_url.clone();
        let brokers = self.settings.kafka_brokers.clone();
        let db_name = self.db_name.clone();
        let topics: Vec<String> = self
            .topics
            .with_partitions()
            .iter()
            .map(|(t, _)| (*t).to_owned())
            .collect();
        // Drop runs inside the test's runtime; clean up on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let drop_db = async {
                    let mut admin = PgConnection::connect(&admin_url).await?;
                    sqlx::query(&format!(
                        "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
                    ))
                    .execute(&mut admin)
                    .await?;
                    anyhow::Ok(())
                };
                let _ = tokio::time::timeout(Duration::from_secs(10), drop_db).await;
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    crate::kafka::delete_topics(&brokers, &topics),
                )
                .await;
            });
        });
        let _ = cleanup.join();
    }
}
