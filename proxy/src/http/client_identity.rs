//! The identity an inbound client proved with its certificate, in the forms requests use: the
//! `x-pillion-client-id` header the app sees and the `client_id` metric label.

use http::HeaderValue;

/// A client identity proven by its certificate, with its header and label forms made once.
#[derive(Debug)]
pub struct ClientIdentity {
    /// The SPIFFE ID.
    pub id: pillion_certs::SpiffeId,
    /// The same, as the `x-pillion-client-id` value.
    pub header: HeaderValue,
    /// The `client_id` metric label: the ID when it is of `trust_domain`, else `other`, so
    /// that foreign callers cannot grow the metrics without bound.
    pub label: Box<str>,
}

impl ClientIdentity {
    /// Wraps an ID verified by a proxy whose own identity is of `trust_domain`.
    pub fn new(id: pillion_certs::SpiffeId, trust_domain: &str) -> Self {
        // A parsed SPIFFE ID is ASCII without controls, so it is always a valid header value.
        let header =
            HeaderValue::from_str(id.as_str()).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        let label = if id.trust_domain() == trust_domain { id.as_str() } else { "other" };
        Self { label: label.into(), id, header }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_trust_domain_is_labelled_by_name() {
        let id = |s| pillion_certs::SpiffeId::parse(s).expect("valid ID");
        let ours = ClientIdentity::new(id("spiffe://cluster.local/ns/shop/sa/web"), "cluster.local");
        assert_eq!(&*ours.label, "spiffe://cluster.local/ns/shop/sa/web");
        assert_eq!(ours.header, "spiffe://cluster.local/ns/shop/sa/web");
        let foreign = ClientIdentity::new(id("spiffe://partner.example/ns/a/sa/b"), "cluster.local");
        assert_eq!(&*foreign.label, "other");
        assert_eq!(foreign.header, "spiffe://partner.example/ns/a/sa/b");
    }
}
