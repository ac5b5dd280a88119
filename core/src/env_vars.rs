//! Reading one environment variable with a default. Its own module because every module that has a
//! setting reads it this way ([`crate::config`], [`crate::kafka`], [`crate::topics`]), while `config`
//! also holds the settings of those modules: the readers sit below all three.

/// Read `name`, or `default` when it is unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Read and parse `name`, or `default` when it is unset or empty.
pub fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name).ok().filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}")),
    }
}
