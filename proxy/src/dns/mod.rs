//! Names resolved to addresses: the one resolver (hickory, on Tokio) built from the `resolver`
//! section, asking A and AAAA together and telling, for each, a definitive answer (records, or
//! none) from a failure (timeout, SERVFAIL, nameserver away). [`watch`] keeps services' `dns`
//! endpoints current with it; the control-plane client resolves its address with it too.

pub mod watch;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, OnceLock},
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

/// What the nameservers said about a name, per address family: each answered (its addresses,
/// sorted, maybe none: NXDOMAIN or no such records is an answer too) or failed.
#[derive(Debug)]
pub struct Answer {
    /// The A records.
    pub v4: Result<Vec<IpAddr>, ResolveFailure>,
    /// The AAAA records.
    pub v6: Result<Vec<IpAddr>, ResolveFailure>,
    /// When to ask again: the shortest record TTL of the answered families, clamped into
    /// `[min_ttl, max_ttl]`; `min_ttl` with no records, so that the first pod of a headless
    /// Service is seen soon.
    pub ttl: Duration,
}

/// The process's resolver and its TTL bounds.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// Built at the first name asked for (a proxy that only ever meets IP literals never pays
    /// for a resolver and its cache), shared by every clone. Or why there is none
    /// (`/etc/resolv.conf` unreadable): every name then fails to resolve, while IP literals
    /// still work and a proxy without names runs as before.
    inner: Arc<OnceLock<Result<TokioResolver, Arc<str>>>>,
    config: ResolverConfig,
}

impl Resolver {
    /// A resolver asking `config.nameservers`, or those of `/etc/resolv.conf` (with its search
    /// domains and options, and `/etc/hosts`) when none are given.
    pub fn new(config: &ResolverConfig) -> Self {
        Self { inner: Arc::default(), config: config.clone() }
    }

    fn inner(&self) -> &Result<TokioResolver, Arc<str>> {
        self.inner.get_or_init(|| {
            Self::build(&self.config).map_err(|e| {
                tracing::warn!(error = %e, "no DNS resolver: `dns` names and control.address cannot resolve");
                Arc::from(e.to_string())
            })
        })
    }

    fn build(config: &ResolverConfig) -> Result<TokioResolver, SetupError> {
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
        Ok(builder.build())
    }

    /// The settings this resolver was built from.
    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// Asks for `host`'s A and AAAA records at once.
    pub async fn resolve(&self, host: &str) -> Answer {
        let inner = match self.inner() {
            Ok(r) => r,
            Err(why) => {
                let fail =
                    || ResolveFailure { host: host.to_owned(), error: ResolveError::from(why.to_string()) };
                return Answer { v4: Err(fail()), v6: Err(fail()), ttl: self.config.min_ttl };
            }
        };
        let (a, aaaa) = tokio::join!(inner.ipv4_lookup(host), inner.ipv6_lookup(host));
        let now = Instant::now();
        let mut until: Option<Instant> = None;
        let mut family = |r: Result<Vec<IpAddr>, ResolveError>, valid_until: Option<Instant>| {
            if let Some(v) = valid_until {
                until = Some(until.map_or(v, |u| u.min(v)));
            }
            match r {
                Ok(mut ips) => {
                    ips.sort_unstable();
                    ips.dedup();
                    Ok(ips)
                }
                Err(e) if e.is_no_records_found() => Ok(Vec::new()),
                Err(error) => Err(ResolveFailure { host: host.to_owned(), error }),
            }
        };
        let v4_until = a.as_ref().ok().map(|l| l.valid_until());
        let v6_until = aaaa.as_ref().ok().map(|l| l.valid_until());
        let v4 = family(a.map(|l| l.iter().map(|r| IpAddr::V4(r.0)).collect()), v4_until);
        let v6 = family(aaaa.map(|l| l.iter().map(|r| IpAddr::V6(r.0)).collect()), v6_until);
        let ttl = until.map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
        Answer { v4, v6, ttl: self.config.clamp(ttl) }
    }

    /// `host:port`'s addresses: an IP literal as it is, a name through [`resolve`](Self::resolve).
    /// The families that answered count; a name with no address is an error here: a caller
    /// wants something to connect to.
    pub async fn socket_addrs(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveFailure> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let answer = self.resolve(host).await;
        let ips: Vec<IpAddr> = match (answer.v4, answer.v6) {
            (Err(e), Err(_)) => return Err(e),
            (v4, v6) => v4.into_iter().chain(v6).flatten().collect(),
        };
        if ips.is_empty() {
            let error = ResolveError::from(format!("{host} has no A or AAAA records"));
            return Err(ResolveFailure { host: host.to_owned(), error });
        }
        Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}
