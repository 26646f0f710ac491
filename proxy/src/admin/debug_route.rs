//! `/debug/route?host=H&path=P&method=M[&listener=N|&dst=IP:PORT|&service=S][&header=NAME:VALUE]`:
//! what the proxy would do with such a request right now (which route and why, its backends,
//! and their endpoints with state), so an operator can see what a reload or a push changed.

use http::{Method, Request, request::Parts};
use serde_json::{Value, json};

use crate::live::Serving;
use pillion_config::route;

/// The explanation as JSON, or a message naming the bad parameter.
pub fn explain(rt: &Serving, query: &str) -> Result<Value, String> {
    let mut host = "";
    let mut path = "/";
    let mut method = Method::GET;
    let mut logical = None;
    let mut headers = Vec::new();
    for (k, v) in
        query.split('&').filter(|kv| !kv.is_empty()).map(|kv| kv.split_once('=').unwrap_or((kv, "")))
    {
        match k {
            "host" => host = v,
            "path" => path = v,
            "method" => {
                method =
                    Method::from_bytes(v.as_bytes()).map_err(|_| format!("method {v:?} is not a method"))?
            }
            "listener" => {
                let i: usize = v.parse().map_err(|_| format!("listener {v:?} is not an index"))?;
                let l = rt
                    .config
                    .outbound
                    .listeners
                    .get(i)
                    .ok_or(format!("there is no outbound.listeners[{i}]"))?;
                logical =
                    Some(l.service.ok_or(format!("outbound.listeners[{i}]'s service is not known yet"))?);
            }
            "dst" => {
                let addr = v.parse().map_err(|_| format!("dst {v:?} is not IP:port"))?;
                logical = Some(
                    *rt.by_addr
                        .get(&addr)
                        .ok_or(format!("{v} is no service's address: it passes through"))?,
                );
            }
            "service" => {
                logical = Some(
                    rt.config
                        .services
                        .iter()
                        .position(|s| &*s.name == v)
                        .ok_or(format!("no service named {v:?}"))?,
                );
            }
            "header" => headers.push(v.split_once(':').ok_or(format!("header {v:?} is not NAME:VALUE"))?),
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    let mut req = Request::builder().method(method).uri(path).header(http::header::HOST, host);
    for (n, v) in headers {
        req = req.header(n, v);
    }
    let parts: Parts = req.body(()).map_err(|e| format!("cannot build that request: {e}"))?.into_parts().0;

    let logical_name = logical.map(|s| &*rt.config.services[s].name);
    let request_host = route::request_host(&parts);
    let matched = route::position(&rt.config.routes, &parts, &request_host, logical_name);
    let (route_json, backends, why) = match (matched, logical) {
        (Some(i), _) => {
            let r = &rt.config.routes[i];
            let why = format!("routes[{i}] {:?} is the first route whose match holds", r.name);
            let backends: Vec<(usize, u32)> = r.backends.clone();
            let timeout = r.timeout.map(|t| format!("{t:?}"));
            (
                json!({"name": &*r.name, "index": i, "timeout": timeout, "retry": r.retry.is_some()}),
                backends,
                why,
            )
        }
        (None, Some(s)) => {
            (Value::Null, vec![(s, 1)], "no route matched: the request goes to its own service".into())
        }
        (None, None) => {
            (Value::Null, vec![], "no route matched and no service is addressed: no-route".into())
        }
    };
    let backends: Vec<Value> = backends
        .iter()
        .map(|&(s, weight)| {
            let svc = &rt.services[s];
            let endpoints: Vec<Value> = svc
                .balancer
                .endpoints()
                .iter()
                .map(|e| {
                    let state = if e.stats.health.is_ejected() { "ejected" } else { "healthy" };
                    json!({
                        "addr": e.addr.to_string(),
                        "weight": e.weight,
                        "identity": e.conn.identity.as_ref().map(|i| i.to_string()),
                        "state": state,
                        "in_flight": e.stats.load.in_flight(),
                    })
                })
                .collect();
            let cfg = &rt.config.services[s];
            json!({"service": &*cfg.name, "weight": weight, "lb": cfg.lb, "protocol": cfg.protocol, "endpoints": endpoints})
        })
        .collect();
    Ok(json!({
        "version": rt.version,
        "request": {"host": host, "path": path, "method": parts.method.as_str(), "service": logical_name},
        "route": route_json,
        "why": why,
        "backends": backends,
    }))
}
