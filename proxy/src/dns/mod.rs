//! Names resolved to addresses: the one resolver (hickory, on Tokio) built from the `resolver`
//! section, asking A and AAAA together and telling a definitive answer (records, or none) from a
//! failure (timeout, SERVFAIL, nameserver away). [`watch`] keeps services' `dns` endpoints
//! current with it; the control-plane client resolves its address with it too.

pub mod watch;

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use hickory_resolver::{
    ResolveError, TokioResolver,
    config::{NameServerConfigGroup, ResolveHosts, ResolverConfig as HickoryConfig},
    name_server::TokioConnectionProvider,
};
use pillion_config::dns::ResolverConfig;

/// Time allowed for one query to a configured nameserver (resolv.conf's own options apply
/// otherwise): a sidecar retries with backoff rather than waiting long on one attempt.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the resolver could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the DNS resolver: {0}")]
pub struct SetupError(#[from] ResolveError);

/// A resolution that gave no answer (as opposed to an answer with no records).
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}: {error}")]
pub struct ResolveFailure {
    /// The name asked.
    pub host: String,
    /// What failed.
    pub error: ResolveError,
}

/// What the nameservers said about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Its A and AAAA addresses, sorted, without repeats; empty when it has none (NXDOMAIN or
    /// no such records), which is an answer too.
    pub ips: Vec<IpAddr>,
    /// When to ask again: the shortest record TTL, clamped into `[min_ttl, max_ttl]`.
    pub ttl: Duration,
}

/// The process's resolver and its TTL bounds.
#[derive(Debug, Clone)]
pub struct Resolver {
    inner: TokioResolver,
    config: ResolverConfig,
}

impl Resolver {
    /// A resolver asking `config.nameservers`, or those of `/etc/resolv.conf` (with its search
    /// domains and options, and `/etc/hosts`) when none are given.
    pub fn new(config: &ResolverConfig) -> Result<Self, SetupError> {
        let mut builder = if config.nameservers.is_empty() {
            TokioResolver::builder_tokio()?
        } else {
            let mut group = NameServerConfigGroup::new();
            for ns in &config.nameservers {
                // Both UDP and TCP (for truncated answers), trusting an authoritative NXDOMAIN.
                group.merge(NameServerConfigGroup::from_ips_clear(&[ns.ip()], ns.port(), true));
            }
            let mut b = TokioResolver::builder_with_config(
                HickoryConfig::from_parts(None, Vec::new(), group),
                TokioConnectionProvider::default(),
            );
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b.options_mut().timeout = QUERY_TIMEOUT;
            b
        };
        let opts = builder.options_mut();
        // The resolver's cache keeps an answer no longer than we would: a re-resolution at the
        // clamped TTL asks the nameserver again.
        opts.positive_min_ttl = Some(config.min_ttl);
        opts.positive_max_ttl = Some(config.max_ttl);
        opts.negative_min_ttl = None;
        opts.negative_max_ttl = Some(config.min_ttl);
        Ok(Self { inner: builder.build(), config: config.clone() })
    }

    /// The settings this resolver was built from.
    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// Asks for `host`'s A and AAAA records at once. Both must be answered (with records or
    /// with none) for an answer: one family timing out is a failure, not half an answer.
    pub async fn resolve(&self, host: &str) -> Result<Answer, ResolveFailure> {
        let fail = |error| ResolveFailure { host: host.to_owned(), error };
        let (v4, v6) = tokio::join!(self.inner.ipv4_lookup(host), self.inner.ipv6_lookup(host));
        let now = Instant::now();
        let mut ips = Vec::new();
        let mut until: Option<Instant> = None;
        let mut note = |valid_until: Instant| until = Some(until.map_or(valid_until, |u| u.min(valid_until)));
        match v4 {
            Ok(l) => {
                note(l.valid_until());
                ips.extend(l.iter().map(|a| IpAddr::V4(a.0)));
            }
            Err(e) if e.is_no_records_found() => {}
            Err(e) => return Err(fail(e)),
        }
        match v6 {
            Ok(l) => {
                note(l.valid_until());
                ips.extend(l.iter().map(|a| IpAddr::V6(a.0)));
            }
            Err(e) if e.is_no_records_found() => {}
            Err(e) => return Err(fail(e)),
        }
        ips.sort_unstable();
        ips.dedup();
        // No records: ask again soon, so that the first pod of a headless service is seen.
        let ttl = until.map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
        Ok(Answer { ips, ttl: self.config.clamp(ttl) })
    }

    /// `host:port`'s addresses: an IP literal as it is, a name through [`resolve`](Self::resolve).
    /// A name with no records is an error here: a caller wants something to connect to.
    pub async fn socket_addrs(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveFailure> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let answer = self.resolve(host).await?;
        if answer.ips.is_empty() {
            let error = ResolveError::from(format!("{host} has no A or AAAA records"));
            return Err(ResolveFailure { host: host.to_owned(), error });
        }
        Ok(answer.ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}
