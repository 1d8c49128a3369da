//! `coordination.k8s.io/v1` Leases, as the Kubernetes API server keeps them: create
//! (409 when it exists), get, replace (409 when the `resourceVersion` sent is not the
//! current one: optimistic concurrency), delete. The simulator does not interpret a
//! Lease's spec: holders and expiry are the clients' business, as in Kubernetes.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;

/// Why a Lease request was refused: (HTTP status, Kubernetes reason, message).
pub type Refusal = (u16, &'static str, String);

/// Every Lease, by (namespace, name).
#[derive(Debug, Default)]
pub struct Leases {
    items: BTreeMap<(String, String), Lease>,
    next_version: u64,
}

impl Leases {
    fn stamp(&mut self, lease: &mut Lease, ns: &str, name: &str) {
        self.next_version += 1;
        lease.metadata.resource_version = Some(self.next_version.to_string());
        lease.metadata.namespace = Some(ns.to_string());
        lease.metadata.name = Some(name.to_string());
    }

    pub fn get(&self, ns: &str, name: &str) -> Result<Lease, Refusal> {
        self.items
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| not_found(name))
    }

    pub fn list(&self, ns: &str) -> Vec<Lease> {
        self.items
            .iter()
            .filter(|((n, _), _)| n == ns)
            .map(|(_, l)| l.clone())
            .collect()
    }

    pub fn create(&mut self, ns: &str, mut lease: Lease) -> Result<Lease, Refusal> {
        let name = lease
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or((422, "Invalid", "metadata.name: Required value".to_string()))?;
        let key = (ns.to_string(), name.clone());
        if self.items.contains_key(&key) {
            return Err((
                409,
                "AlreadyExists",
                format!("leases.coordination.k8s.io \"{name}\" already exists"),
            ));
        }
        lease.metadata.uid = Some(format!("lease-{}", crate::random_hex(8)));
        lease.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(crate::now()),
        );
        self.stamp(&mut lease, ns, &name);
        self.items.insert(key, lease.clone());
        Ok(lease)
    }

    pub fn replace(&mut self, ns: &str, name: &str, mut lease: Lease) -> Result<Lease, Refusal> {
        let key = (ns.to_string(), name.to_string());
        let current = self.items.get(&key).ok_or_else(|| not_found(name))?;
        if lease.metadata.resource_version != current.metadata.resource_version {
            return Err((
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": \
                     the object has been modified; please apply your changes to the latest \
                     version and try again"
                ),
            ));
        }
        lease.metadata.uid = current.metadata.uid.clone();
        lease.metadata.creation_timestamp = current.metadata.creation_timestamp.clone();
        self.stamp(&mut lease, ns, name);
        self.items.insert(key, lease.clone());
        Ok(lease)
    }

    pub fn delete(&mut self, ns: &str, name: &str) -> Result<Lease, Refusal> {
        self.items
            .remove(&(ns.to_string(), name.to_string()))
            .ok_or_else(|| not_found(name))
    }
}

fn not_found(name: &str) -> Refusal {
    (
        404,
        "NotFound",
        format!("leases.coordination.k8s.io \"{name}\" not found"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;

    fn lease(name: &str, holder: &str) -> Lease {
        let mut l = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        l.metadata.name = Some(name.into());
        l
    }

    #[test]
    fn create_once_then_conflict() {
        let mut leases = Leases::default();
        leases.create("ns", lease("l", "a")).unwrap();
        let (code, reason, _) = leases.create("ns", lease("l", "b")).unwrap_err();
        assert_eq!((code, reason), (409, "AlreadyExists"));
        // Another namespace is another lease.
        leases.create("other", lease("l", "b")).unwrap();
    }

    #[test]
    fn replace_needs_the_current_resource_version() {
        let mut leases = Leases::default();
        let first = leases.create("ns", lease("l", "a")).unwrap();
        let mut mine = first.clone();
        mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
        let second = leases.replace("ns", "l", mine.clone()).unwrap();
        assert_ne!(
            second.metadata.resource_version,
            first.metadata.resource_version
        );
        // A stale version loses.
        let (code, reason, _) = leases.replace("ns", "l", mine).unwrap_err();
        assert_eq!((code, reason), (409, "Conflict"));
        assert_eq!(
            leases.get("ns", "l").unwrap().spec.unwrap().holder_identity,
            Some("b".into())
        );
    }

    #[test]
    fn delete_then_not_found() {
        let mut leases = Leases::default();
        leases.create("ns", lease("l", "a")).unwrap();
        leases.delete("ns", "l").unwrap();
        assert_eq!(leases.get("ns", "l").unwrap_err().0, 404);
        assert_eq!(leases.delete("ns", "l").unwrap_err().0, 404);
    }
}
