//! Whose a projected ServiceAccount token is: one TokenReview (`authentication.k8s.io/v1`, audience
//! [`AUDIENCE`]) per certificate request, then a read of the Pod it is bound to.
//!
//! The API server checks the signature, expiry, audience and that the bound Pod (and
//! ServiceAccount) still exist; this module checks what the review answered (authenticated, our
//! audience, a ServiceAccount user, a bound Pod) and, itself, that the Pod of that name still has
//! the token's uid: a Pod deleted and recreated under the same name gets a new token.

use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus},
    core::v1::Pod,
};
use kube::{Api, Client, api::PostParams};

/// The audience a token must be for: the pod volume's `serviceAccountToken.audience`.
pub const AUDIENCE: &str = "pillion";
const SA_PREFIX: &str = "system:serviceaccount:";
const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const POD_UID: &str = "authentication.kubernetes.io/pod-uid";

/// Asks the API server about tokens.
#[derive(Clone)]
pub struct Reviewer {
    client: Client,
}

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reviewer")
    }
}

/// The ServiceAccount and Pod a token was found to belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewed {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub service_account: String,
    /// The Pod the token is bound to.
    pub pod: String,
}

/// Why a token gives no identity.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The API server could not be asked (down, or refusing us): the caller should retry.
    #[error("the API server could not review the token: {0}")]
    Unavailable(String),
    /// The API server did not authenticate the token (bad signature, expired, wrong audience,
    /// bound Pod gone).
    #[error("the API server refused the token: {0}")]
    Refused(String),
    /// Authenticated, but not for our audience.
    #[error("the token is not for audience {AUDIENCE:?}")]
    WrongAudience,
    /// Authenticated, but not a ServiceAccount's.
    #[error("the token is not a ServiceAccount's (user {0:?})")]
    NotServiceAccount(String),
    /// A ServiceAccount's token not bound to a Pod (a legacy Secret token, or a TokenRequest
    /// without a bound object).
    #[error("the token is bound to no Pod; mount a projected serviceAccountToken")]
    NotBound,
    /// The bound Pod is gone, or is another Pod of the same name.
    #[error("the token's Pod {namespace}/{pod} no longer exists")]
    PodGone {
        /// Its namespace.
        namespace: String,
        /// Its name.
        pod: String,
    },
}

impl Reviewer {
    /// A reviewer using `client` (which needs `create` on `tokenreviews`, `get` on `pods`).
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Who `token` belongs to, asked of the API server.
    pub async fn review(&self, token: &str) -> Result<Reviewed, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_owned(), audiences: Some(vec![AUDIENCE.to_owned()]) },
            ..TokenReview::default()
        };
        let api = Api::<TokenReview>::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await.map_err(unavailable)?;
        let reviewed = judge(answer.status.unwrap_or_default())?;
        let (pod, uid) = reviewed;
        let pods = Api::<Pod>::namespaced(self.client.clone(), &pod.namespace);
        let found = pods.get_opt(&pod.pod).await.map_err(unavailable)?;
        if found.and_then(|p| p.metadata.uid).is_none_or(|u| u != uid) {
            return Err(ReviewError::PodGone { namespace: pod.namespace, pod: pod.pod });
        }
        Ok(pod)
    }
}

/// The API server's own message when it answered (e.g. RBAC's `forbidden`), else the error.
fn unavailable(e: kube::Error) -> ReviewError {
    match e {
        kube::Error::Api(status) => ReviewError::Unavailable(status.message),
        e => ReviewError::Unavailable(e.to_string()),
    }
}

/// The ServiceAccount and bound Pod (with its uid) of an answered review.
fn judge(status: TokenReviewStatus) -> Result<(Reviewed, String), ReviewError> {
    if status.authenticated != Some(true) {
        return Err(ReviewError::Refused(status.error.unwrap_or_else(|| "not authenticated".into())));
    }
    if !status.audiences.unwrap_or_default().iter().any(|a| a == AUDIENCE) {
        return Err(ReviewError::WrongAudience);
    }
    let user = status.user.unwrap_or_default();
    let username = user.username.unwrap_or_default();
    let Some((namespace, sa)) = username.strip_prefix(SA_PREFIX).and_then(|r| r.split_once(':')) else {
        return Err(ReviewError::NotServiceAccount(username));
    };
    if namespace.is_empty() || sa.is_empty() || sa.contains(':') {
        return Err(ReviewError::NotServiceAccount(username.clone()));
    }
    let extra = user.extra.unwrap_or_default();
    let one = |key: &str| extra.get(key).and_then(|v| v.first()).filter(|v| !v.is_empty()).cloned();
    let (Some(pod), Some(uid)) = (one(POD_NAME), one(POD_UID)) else { return Err(ReviewError::NotBound) };
    let reviewed = Reviewed { namespace: namespace.to_owned(), service_account: sa.to_owned(), pod };
    Ok((reviewed, uid))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    fn status(user: &str, audiences: &[&str], extra: &[(&str, &str)]) -> TokenReviewStatus {
        let extra: BTreeMap<String, Vec<String>> =
            extra.iter().map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()])).collect();
        TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(audiences.iter().map(|a| (*a).to_owned()).collect()),
            user: Some(UserInfo { username: Some(user.into()), extra: Some(extra), ..UserInfo::default() }),
            error: None,
        }
    }

    #[test]
    fn a_bound_service_account_token_names_its_account_and_pod() {
        let s =
            status("system:serviceaccount:shop:web", &["pillion"], &[(POD_NAME, "web-1"), (POD_UID, "u1")]);
        let (r, uid) = judge(s).expect("judged");
        assert_eq!(
            (r.namespace.as_str(), r.service_account.as_str(), r.pod.as_str()),
            ("shop", "web", "web-1")
        );
        assert_eq!(uid, "u1");
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        let bound = [(POD_NAME, "web-1"), (POD_UID, "u1")];
        let refused =
            TokenReviewStatus { error: Some("token has expired".into()), ..TokenReviewStatus::default() };
        assert!(matches!(judge(refused), Err(ReviewError::Refused(e)) if e.contains("expired")));
        let other = status("system:serviceaccount:shop:web", &["api"], &bound);
        assert!(matches!(judge(other), Err(ReviewError::WrongAudience)));
        let person = status("alice", &["pillion"], &bound);
        assert!(matches!(judge(person), Err(ReviewError::NotServiceAccount(u)) if u == "alice"));
        let unbound = status("system:serviceaccount:shop:web", &["pillion"], &[]);
        assert!(matches!(judge(unbound), Err(ReviewError::NotBound)));
    }
}
