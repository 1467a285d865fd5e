//! The report: text for people, JSON for machines (contract §13:
//! `{"accounts": {"<ACCOUNT>": {"provider": n, "matched": n, "foreign": n,
//! "unbound": n, "audit_only": n, "examples": [...]}}}`).

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use super::join::{Account, Example, Tally};

/// What the text report says besides the counts.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    pub provider: &'static str,
    pub audit_lines: u64,
    pub audit_relayed: u64,
    pub audit_duplicates: u64,
    pub events: u64,
    pub events_without_id: u64,
    pub unbound_overflow: bool,
}

fn example_json(e: &Example) -> Value {
    match e {
        Example::Foreign {
            id,
            credential,
            credential_account,
            tenant,
            audit,
            conflict,
        } => json!({
            "kind": "foreign", "id": id, "credential": credential,
            "credential_account": credential_account, "tenant": tenant,
            "audit": audit, "conflicting_audit": conflict,
        }),
        Example::Unbound { id, events } => json!({
            "kind": "unbound", "id": id, "events": events,
        }),
        Example::AuditOnly {
            id,
            credential,
            tenant,
            audit,
        } => json!({
            "kind": "audit_only", "id": id, "credential": credential,
            "tenant": tenant, "audit": audit,
        }),
    }
}

/// The JSON report (one object, keys in the contract's order).
pub fn json(accounts: &[Account], tallies: &[Tally]) -> Value {
    let mut out = Map::new();
    for (a, t) in accounts.iter().zip(tallies) {
        out.insert(
            a.name.clone(),
            json!({
                "provider": t.provider,
                "matched": t.matched,
                "foreign": t.foreign,
                "unbound": t.unbound,
                "audit_only": t.audit_only,
                "examples": t.examples.iter().map(example_json).collect::<Vec<_>>(),
            }),
        );
    }
    json!({ "accounts": out })
}

/// The text report.
pub fn text(accounts: &[Account], tallies: &[Tally], notes: &Notes) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "reconcile ({}): {} provider events read; audit: {} lines, {} relayed messages",
        notes.provider, notes.events, notes.audit_lines, notes.audit_relayed
    );
    let (mut foreign, mut unbound) = (0, 0);
    for (a, t) in accounts.iter().zip(tallies) {
        foreign += t.foreign;
        unbound += t.unbound;
        let verdict = if t.foreign + t.unbound > 0 {
            "FAIL"
        } else {
            "ok"
        };
        let _ = writeln!(
            s,
            "\naccount {}: {} provider messages: {} matched, {} foreign, {} unbound, {} audit-only  [{verdict}]",
            a.name, t.provider, t.matched, t.foreign, t.unbound, t.audit_only
        );
        for e in &t.examples {
            let _ = match e {
                Example::Foreign {
                    id,
                    credential,
                    credential_account,
                    tenant,
                    audit,
                    conflict,
                } => writeln!(
                    s,
                    "  foreign     {id}: audited under credential {credential} ({}), tenant {tenant}, at {audit}{}",
                    credential_account
                        .as_deref()
                        .map_or("no --account holds it".to_string(), |o| format!("account {o}'s pin")),
                    if *conflict { "; the audit gives this message more than one credential" } else { "" }
                ),
                Example::Unbound { id, events } => writeln!(
                    s,
                    "  unbound     {}: in {events}, no audit record (sent around the sidecars?)",
                    if id.is_empty() { "(no id)" } else { id }
                ),
                Example::AuditOnly {
                    id,
                    credential,
                    tenant,
                    audit,
                } => writeln!(
                    s,
                    "  audit-only  {}: relayed under credential {credential}, tenant {tenant}, at {audit}; no provider event",
                    id.as_deref().unwrap_or("(no id in the audit line)")
                ),
            };
        }
    }
    s.push('\n');
    if notes.events_without_id > 0 {
        let _ = writeln!(
            s,
            "note: {} events name no message (account events) and were not counted",
            notes.events_without_id
        );
    }
    if notes.audit_duplicates > 0 {
        let _ = writeln!(
            s,
            "note: {} audit lines repeat a message already read (counted once)",
            notes.audit_duplicates
        );
    }
    if notes.unbound_overflow {
        let _ = writeln!(
            s,
            "note: more than {} distinct unbound ids: later events of an unbound message may count more than once",
            super::join::MAX_UNBOUND_TRACKED
        );
    }
    if foreign + unbound > 0 {
        let _ = writeln!(s, "result: FAIL ({foreign} foreign, {unbound} unbound)");
    } else {
        let _ = writeln!(
            s,
            "result: ok (every provider message came from a sidecar bound to its account)"
        );
    }
    s
}
