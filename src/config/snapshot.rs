//! The serving snapshot seen from the rooms below it: the delivery workers and MQTT ingress
//! read what they need through narrow traits of their own, implemented here for the live
//! snapshot (an `ArcSwap` a reload swaps), so neither holds nor imports the whole config.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Gateway;
use crate::delivery::Directory;
use crate::ingest::dictionary::Dictionary;
use crate::route::Route;

impl Directory for ArcSwap<Gateway> {
    fn route(&self, id: &str) -> Option<Arc<Route>> {
        self.load().routes.by_id(id).cloned()
    }

    fn queued_backends(&self) -> Vec<String> {
        let gw = self.load();
        let mut names: Vec<String> =
            gw.routes.iter().filter(|r| r.queued.is_some()).map(|r| r.backend.name().to_string()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    fn max_concurrency(&self, backend: &str) -> usize {
        self.load().backends.get(backend).map_or(1, |b| b.gate.max_concurrency())
    }
}

impl crate::ingest::mqtt::Current for ArcSwap<Gateway> {
    fn dictionary(&self) -> Arc<Dictionary> {
        self.load().sensors.clone()
    }

    fn max_body(&self) -> usize {
        self.load().server.max_body
    }

    fn max_dead_input(&self) -> u64 {
        self.load().delivery.max_dead_input
    }
}
