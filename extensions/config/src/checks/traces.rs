//! The `traces` section: a usable collector endpoint, a sampling ratio in range, header names.

use super::Checker;
use crate::traces::TracesConfig;

impl Checker<'_> {
    pub(super) fn traces(&mut self) {
        let Some(value) = self.get("traces") else { return };
        if !self.sound("traces") {
            return;
        }
        let Ok(traces) = serde_json::from_value::<TracesConfig>(value.clone()) else { return };
        if let Some((key, why)) = traces.problem() {
            self.invalid(&format!("traces.{key}"), why);
        }
        self.ca_file("traces.ca_file");
    }
}
