//! One config version made ready to serve: the validated config with a balancer and endpoint
//! pools for each service, and the index transparent traffic is matched by. Built on every
//! update, keeping what the previous version already had for the services and endpoints that
//! stay.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering::Relaxed},
};

use pillion_config::Config;

use crate::{
    balance::Balancer,
    balance::{Endpoint, Service, ServiceState},
    tls::Tls,
    upstream::{EndpointConn, Settings},
};

/// One config version made ready to serve.
#[derive(Debug)]
pub struct Serving {
    /// Config version; bumps on every applied update.
    pub version: u64,
    /// The validated config.
    pub config: Config,
    /// One per `config.services` entry, same order.
    pub services: Vec<Service>,
    /// Service index by an address it answers on (service address or endpoint).
    pub by_addr: HashMap<SocketAddr, usize>,
}

impl Serving {
    /// Builds the runtime for `config`, keeping the state of services (limits, retry budget)
    /// and endpoints (pools, load, health) that `previous` already had: same service name,
    /// and for endpoints the same address, identity and connect timeout.
    pub fn build(
        config: Config,
        version: u64,
        previous: Option<&Serving>,
        tls: Option<&Tls>,
    ) -> Result<Self, pillion_certs::Error> {
        let mut old_services: HashMap<&str, &Arc<ServiceState>> = HashMap::new();
        let mut old_endpoints: HashMap<(&str, SocketAddr), &Arc<Endpoint>> = HashMap::new();
        if let Some(prev) = previous {
            for (cfg, svc) in prev.config.services.iter().zip(&prev.services) {
                old_services.insert(&cfg.name, &svc.state);
                for e in svc.balancer.endpoints() {
                    old_endpoints.insert((&cfg.name, e.addr), e);
                }
            }
        }
        let mut services = Vec::with_capacity(config.services.len());
        for svc in &config.services {
            let state = match old_services.get(&*svc.name) {
                Some(s) => {
                    s.max_pending.store(svc.limits.max_pending, Relaxed);
                    s.connections.max.store(svc.limits.max_connections, Relaxed);
                    Arc::clone(s)
                }
                None => ServiceState::new(svc.limits.max_pending, svc.limits.max_connections),
            };
            let mut endpoints = Vec::with_capacity(svc.endpoints.len());
            for e in &svc.endpoints {
                let settings =
                    Settings { connect_timeout: svc.connect_timeout, http2_keepalive: svc.http2_keepalive };
                let kept = old_endpoints
                    .get(&(&*svc.name, e.addr))
                    .filter(|o| o.conn.settings == settings && o.conn.identity == e.identity);
                let (conn, stats) = match kept {
                    Some(o) => (Arc::clone(&o.conn), Arc::clone(&o.stats)),
                    None => {
                        let conn = EndpointConn::new(
                            e.addr,
                            settings,
                            e.identity.clone(),
                            tls,
                            Arc::clone(&state.connections),
                        )?;
                        (Arc::new(conn), Arc::default())
                    }
                };
                endpoints.push(Arc::new(Endpoint { addr: e.addr, weight: e.weight, conn, stats }));
            }
            let balancer = Balancer::new(Arc::clone(&svc.name), svc.lb, svc.outlier.clone(), endpoints);
            services.push(Service { balancer, state });
        }
        // Transparent outbound traffic is matched by its original destination: a service's
        // `IP:port` addresses, then any endpoint's address.
        let mut by_addr = HashMap::new();
        for (i, svc) in config.services.iter().enumerate() {
            for e in &svc.endpoints {
                by_addr.entry(e.addr).or_insert(i);
            }
        }
        for (i, svc) in config.services.iter().enumerate() {
            for a in svc.addresses.iter().filter_map(|a| a.parse::<SocketAddr>().ok()) {
                by_addr.insert(a, i);
            }
        }
        drop((old_services, old_endpoints));
        Ok(Self { version, config, services, by_addr })
    }
}
