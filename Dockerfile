# Builds both binaries; docker-compose.yml runs them as the api and the workers.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The SQL is checked against the committed query data in .sqlx/: no database at build time.
ENV SQLX_OFFLINE=true
RUN cargo build --release --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/concert-api /src/target/release/concert-worker /usr/local/bin/
EXPOSE 8080
CMD ["concert-api"]
