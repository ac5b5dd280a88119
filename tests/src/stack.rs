//! A running service for one test: api and worker instances, in-process (tokio tasks) or as OS processes,
//! sharing the test's database, topics, consumer group and token secret.

use std::time::Duration;

use concert_api::{ApiConfig, Application};
use concert_workers::{Roles, WorkerConfig};
use tokio::sync::{watch, Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;

use crate::client::Api;
use crate::env::{TestEnv, ADMIN_TOKEN};
use crate::procs::{self, Proc, ProcSpec};
use crate::wait::{wait_until, Deadline};

/// Stacks with OS processes or many instances run one at a time: the machine has two cores, and a crowd
/// test next to another crowd test measures the scheduler rather than the service.
static HEAVY: Semaphore = Semaphore::const_new(1);

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct StackBuilder {
    apis: usize,
    workers: Vec<Roles>,
    process_apis: usize,
    process_workers: Vec<(String, Vec<(String, String)>)>,
    /// `RATE_LIMIT_PER_USER` of every api instance; `None` keeps the production default.
    rate_limit_per_user: Option<u32>,
    /// A change to the configuration of the in-process api instances.
    configure_apis: Option<fn(&mut ApiConfig)>,
    /// Brokers other than the shared ones (a test's own broker).
    kafka_brokers: Option<String>,
    /// The database server's maintenance database, when not the shared server.
    database_server: Option<String>,
}

impl StackBuilder {
    /// In-process api instances.
    pub fn apis(mut self, n: usize) -> Self {
        self.apis = n;
        self
    }

    /// In-process workers running every role.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers.extend(std::iter::repeat_n(Roles::all(), n));
        self
    }

    /// One more in-process worker with these roles.
    pub fn worker_with(mut self, roles: Roles) -> Self {
        self.workers.push(roles);
        self
    }

    /// `concert-api` processes.
    pub fn process_apis(mut self, n: usize) -> Self {
        self.process_apis = n;
        self
    }

    /// One more `concert-worker` process with `WORKER_ROLES=roles`.
    pub fn process_worker(mut self, roles: &str) -> Self {
        self.process_workers.push((roles.to_owned(), Vec::new()));
        self
    }

    /// One more `concert-worker` process with `WORKER_ROLES=roles` and extra environment (e.g. a failpoint).
    pub fn process_worker_with_env(mut self, roles: &str, env: &[(&str, &str)]) -> Self {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.process_workers.push((roles.to_owned(), env));
        self
    }

    /// Every api instance (in-process or process) with `RATE_LIMIT_PER_USER=per_second` (and a burst of
    /// twice that), for tests that fire more commands from one user than a real client would; 0 turns the
    /// limit off.
    pub fn rate_limit_per_user(mut self, per_second: u32) -> Self {
        self.rate_limit_per_user = Some(per_second);
        self
    }

    /// Changes the configuration of every in-process api instance (applied last), e.g. to turn a limit on.
    pub fn configure_apis(mut self, change: fn(&mut ApiConfig)) -> Self {
        self.configure_apis = Some(change);
        self
    }

    /// Runs the stack on these brokers instead of the shared ones (e.g. a test's own
    /// [`PrivateBroker`](crate::broker::PrivateBroker), which it may restart).
    pub fn kafka_brokers(mut self, brokers: &str) -> Self {
        self.kafka_brokers = Some(brokers.to_owned());
        self
    }

    /// Puts the test's database on another server (its maintenance database's URL), e.g. a private one
    /// the test restarts.
    pub fn database_server(mut self, admin_database_url: &str) -> Self {
        self.database_server = Some(admin_database_url.to_owned());
        self
    }

    pub async fn start(self) -> TestStack {
        let heavy = !self.process_workers.is_empty()
            || self.process_apis > 0
            || self.apis + self.workers.len() > 2;
        let permit = if heavy {
            Some(HEAVY.acquire().await.expect("semaphore is never closed"))
        } else {
            None
        };
        // The shared servers only when the stack does not name both of its own (the container tests
        // bring their own, and must not start the registry's containers for nothing).
        let env = TestEnv::on(
            self.database_server
                .as_deref()
                .unwrap_or_else(|| &crate::env::infra().admin_database_url),
            self.kafka_brokers
                .as_deref()
                .unwrap_or_else(|| &crate::env::infra().kafka_brokers),
        )
        .await;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut stack = TestStack {
            env,
            apis: Vec::new(),
            shutdown,
            tasks: Vec::new(),
            processes: Vec::new(),
            _permit: permit,
        };

        for _ in 0..self.apis {
            let mut config = ApiConfig::for_tests(stack.env.settings.clone());
            if let Some(rate) = self.rate_limit_per_user {
                config.rate_limit_per_user = rate;
                config.rate_limit_burst = rate.saturating_mul(2);
            }
            if let Some(change) = self.configure_apis {
                change(&mut config);
            }
            let app = Application::build(config).await.expect("building the api");
            stack
                .apis
                .push(Api::new(format!("http://{}", app.addr()), ADMIN_TOKEN));
            let rx = shutdown_rx.clone();
            stack.tasks.push(tokio::spawn(async move {
                if let Err(err) = app.run_until_stopped(rx).await {
                    tracing::error!(
                        error = format!("{err:#}"),
                        "in-process api stopped with an error"
                    );
                }
            }));
        }
        for roles in self.workers {
            let config = WorkerConfig {
                group_id: stack.env.group_id.clone(),
                roles,
                ..WorkerConfig::for_tests(stack.env.settings.clone())
            };
            let rx = shutdown_rx.clone();
            stack.tasks.push(tokio::spawn(async move {
                if let Err(err) = concert_workers::run(config, rx).await {
                    tracing::error!(
                        error = format!("{err:#}"),
                        "in-process worker stopped with an error"
                    );
                }
            }));
        }
        for (index, (roles, env)) in self.process_workers.iter().enumerate() {
            let mut spec = ProcSpec::worker(index, roles);
            spec.env.clone_from(env);
            stack.processes.push(spec.spawn(&stack.env));
        }
        let mut spawned_apis = Vec::new();
        for index in 0..self.process_apis {
            let port = procs::free_port();
            let mut spec = ProcSpec::api(index, port);
            if let Some(rate) = self.rate_limit_per_user {
                spec = spec
                    .with_env("RATE_LIMIT_PER_USER", &rate.to_string())
                    .with_env("RATE_LIMIT_BURST", &rate.saturating_mul(2).to_string());
            }
            stack.processes.push(spec.spawn(&stack.env));
            spawned_apis.push(Api::new(format!("http://127.0.0.1:{port}"), ADMIN_TOKEN));
        }
        for api in &spawned_apis {
            stack.wait_for_health(api).await;
        }
        stack.apis.extend(spawned_apis);
        stack
    }
}

/// The running service of one test. Dropping it stops the instances, then drops the database.
pub struct TestStack {
    pub env: TestEnv,
    apis: Vec<Api>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    processes: Vec<Proc>,
    _permit: Option<SemaphorePermit<'static>>,
}

impl TestStack {
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// One api and one worker, in-process.
    pub async fn start() -> Self {
        Self::start_with(1, 1).await
    }

    /// `n_apis` apis and `n_workers` workers (every role), in-process.
    pub async fn start_with(n_apis: usize, n_workers: usize) -> Self {
        Self::builder()
            .apis(n_apis)
            .workers(n_workers)
            .start()
            .await
    }

    /// `n_apis` `concert-api` processes and one `concert-worker` process per entry of `worker_roles`.
    pub async fn processes(n_apis: usize, worker_roles: &[&str]) -> Self {
        let mut builder = Self::builder().process_apis(n_apis);
        for roles in worker_roles {
            builder = builder.process_worker(roles);
        }
        builder.start().await
    }

    /// The first api instance.
    pub fn api(&self) -> &Api {
        self.apis.first().expect("the stack has an api")
    }

    /// Every api instance, in-process ones first.
    pub fn apis(&self) -> &[Api] {
        &self.apis
    }

    /// The test's own database pool.
    pub fn db(&self) -> &sqlx::PgPool {
        &self.env.db
    }

    /// Fails the test if a spawned process has exited, other than those the test stopped on purpose.
    pub fn assert_processes_alive(&mut self) {
        for process in &mut self.processes {
            if process.stopped_on_purpose() {
                continue;
            }
            let name = process.name.clone();
            assert!(
                process.exited().is_none(),
                "{name} exited early: {:?}",
                process.exited()
            );
        }
    }

    /// The names of the spawned processes (`api-0`, `worker-2`, ...), in start order. Process apis appear
    /// in [`apis`](Self::apis) after the in-process ones, in the order of their index.
    pub fn process_names(&self) -> Vec<String> {
        self.processes.iter().map(|p| p.name.clone()).collect()
    }

    /// The spawned process called `name`.
    pub fn process(&mut self, name: &str) -> &mut Proc {
        let names = self.process_names();
        self.processes
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}; there are {names:?}"))
    }

    /// `kill -9` the process called `name` and reap it; it stays listed, stopped, until
    /// [`restart`](Self::restart). Returns how it ended.
    pub fn kill9(&mut self, name: &str) -> std::process::ExitStatus {
        self.process(name).kill9()
    }

    /// Starts the process called `name` again with the spec it was started with (same port, roles, group
    /// and extra environment), killing the old one first if it still runs. An api is waited for until
    /// `/healthz` answers.
    pub async fn restart(&mut self, name: &str) {
        self.restart_with(name, |_| {}).await;
    }

    /// Like [`restart`](Self::restart), with the spec changed first (e.g. a failpoint removed).
    pub async fn restart_with(&mut self, name: &str, change: impl FnOnce(&mut ProcSpec)) {
        let process = self.process(name);
        let mut spec = process.spec.clone();
        process.kill9();
        change(&mut spec);
        let fresh = spec.spawn(&self.env);
        let slot = self
            .processes
            .iter_mut()
            .find(|p| p.name == name)
            .expect("the process is listed");
        // Dropping the old handle reaps what is left of it.
        *slot = fresh;
        if let procs::ProcKind::Api { port } = spec.kind {
            let api = Api::new(format!("http://127.0.0.1:{port}"), ADMIN_TOKEN);
            self.wait_for_health(&api).await;
        }
    }

    /// Starts one more `concert-worker` process while the stack runs; returns its name.
    pub fn spawn_worker(&mut self, roles: &str, env: &[(&str, &str)]) -> String {
        let index = self
            .processes
            .iter()
            .filter(|p| matches!(p.spec.kind, procs::ProcKind::Worker { .. }))
            .count();
        let mut spec = ProcSpec::worker(index, roles);
        for (k, v) in env {
            spec = spec.with_env(k, v);
        }
        let name = spec.name.clone();
        self.processes.push(spec.spawn(&self.env));
        name
    }

    /// Waits up to `deadline` for the process called `name` to exit by itself (e.g. a failpoint), marks
    /// that exit as expected and returns it; `None` if it still runs at the deadline.
    pub async fn wait_for_exit(
        &mut self,
        name: &str,
        deadline: Deadline,
    ) -> Option<std::process::ExitStatus> {
        loop {
            let process = self.process(name);
            if let Some(status) = process.exited() {
                process.mark_stopped();
                return Some(status);
            }
            if deadline.passed() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for_health(&mut self, api: &Api) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let url = format!("{}/healthz", api.base);
        let deadline = Deadline::secs(60);
        loop {
            if let Ok(resp) = http.get(&url).send().await {
                if resp.status().is_success() {
                    return;
                }
            }
            self.assert_processes_alive();
            assert!(!deadline.passed(), "{url} not healthy within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the command consumers answer: joins a throwaway concert's waiting room through every
    /// api instance. Useful before a race, so the race does not measure consumer-group start-up.
    pub async fn warm_up(&self) {
        let api = self.api();
        let concert = api.create_concert(1, 1000).await;
        let user = api.sign_up("warm-up").await;
        for api in self.apis() {
            wait_until(
                "the consumers to answer",
                Deadline::secs(90),
                Duration::from_millis(200),
                || async {
                    let resp = api
                        .post(&format!("/v1/concerts/{}/queue", concert.concert_id))
                        .auth(&user)
                        .wait(5)
                        .send()
                        .await;
                    (resp.status == 201).then_some(())
                },
            )
            .await;
        }
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        // Let in-process instances stop cleanly (the consumer commits and leaves its group) for up to 10 s;
        // that needs a multi-threaded runtime, where a blocking wait may run in place.
        let tasks = std::mem::take(&mut self.tasks);
        let handle = tokio::runtime::Handle::try_current().ok();
        match handle {
            Some(handle)
                if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
                tokio::task::block_in_place(|| {
                    handle.block_on(async {
                        let all = futures::future::join_all(tasks);
                        let _ = tokio::time::timeout(Duration::from_secs(10), all).await;
                    });
                });
                aborts.iter().for_each(tokio::task::AbortHandle::abort);
            }
            _ => tasks.iter().for_each(JoinHandle::abort),
        }
        // Kill the processes before the database goes (TestEnv drops after this).
        self.processes.clear();
    }
}
