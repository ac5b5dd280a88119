//! The booking invariants on containers: every test starts its own PostgreSQL and broker containers through
//! testcontainers, then a stack on them (its own database, topics and consumer group, an in-process api and
//! two workers, as the `it` suite runs), and checks end to end that concurrent holds of one seat have one
//! winner, that a payment debits once and that joins are admitted in order.
//!
//! The engine is the Docker API at `DOCKER_HOST` (default `/var/run/docker.sock`): a Docker engine, or here
//! podman's Docker-compatible socket, which `./dev test` starts (`./dev podman start` by hand). The images
//! are the local ones `./dev images` builds from Debian's packages (`CONTAINER_IMAGES=local`, the default),
//! or the registry's `postgres:15-alpine` and `apache/kafka` through testcontainers-modules
//! (`CONTAINER_IMAGES=registry`, on a machine that can pull them). docs/CONTAINERS.md says more.
//!
//! With no engine answering, the tests pass with a message saying they were skipped, unless
//! `CONTAINER_TESTS` is set (`./dev test` sets it): then a missing or broken engine fails them.

mod engine;
mod invariants;
