//! The permission side of a turn's IO: each call checked against the runner's [`Permissions`]
//! with what it touches, the approver asked, answers "for this session" and "always" remembered,
//! and every decision, answer and executed call handed to the audit log.

use crate::agent::permission::{
    ApprovalRequest, AuditEntry, AuditEvent, Permission, Resource, Rule, Verdict,
};
use crate::agent::run::{Run, RunError};
use crate::agent::turn::Turn;
use exoclaw_types::{AgentEvent, ToolCall, ToolEffect};
use std::sync::Arc;
use std::time::Duration;

impl Turn<'_> {
    /// What `call` touches, as its tool names it, paths resolved against the workspace.
    pub(super) fn resources(&self, call: &ToolCall) -> Vec<Resource> {
        let Some(tool) = self.runner.tools.get(&call.name) else { return Vec::new() };
        let named = tool.resources(&call.arguments);
        if named.is_empty() {
            return named;
        }
        let root = &self.runner.workspace_root;
        let root = root.canonicalize().unwrap_or_else(|_| root.clone());
        named.into_iter().map(|resource| resource.in_workspace(&root)).collect()
    }

    /// Decides `call` (of a tool with effect `effect`) and records the decision.
    pub(super) fn check(&self, call: &ToolCall, effect: ToolEffect) -> Permission {
        let resources = self.resources(call);
        let verdict = self.verdict(call, effect, &resources);
        self.audit_decision(call, effect, resources, &verdict);
        verdict.permission
    }

    fn verdict(&self, call: &ToolCall, effect: ToolEffect, resources: &[Resource]) -> Verdict {
        self.runner.permissions.check(Some(self.cx.session_id), &call.name, effect, resources)
    }

    fn audit_decision(
        &self,
        call: &ToolCall,
        effect: ToolEffect,
        resources: Vec<Resource>,
        verdict: &Verdict,
    ) {
        let event = AuditEvent::Decided { permission: verdict.permission, reason: verdict.reason.clone() };
        self.audit(call, effect, resources, event);
    }

    /// A hook rewrote a pending call's arguments: the call is decided again on what it now
    /// touches (a rewrite cannot slip past a rule).
    pub(super) fn rewrite(
        &self,
        run: &mut Run,
        call: &ToolCall,
        effect: Option<ToolEffect>,
        arguments: serde_json::Value,
    ) -> Result<(), RunError> {
        run.rewrite_call(&call.id, arguments.clone())?;
        let Some(effect) = effect else { return Ok(()) };
        let rewritten = ToolCall { arguments, ..call.clone() };
        if let Some(settled) = run.reconsider(&call.id, self.check(&rewritten, effect))? {
            self.settled(&settled);
        }
        Ok(())
    }

    /// Asks the user about each call waiting for approval, saving the run after each answer.
    ///
    /// Each call is decided again first: an answer "for this session" or "always" given for an
    /// earlier call may cover it, and then nobody is asked.
    pub async fn ask(&self, run: &mut Run, asks: Vec<ApprovalRequest>) {
        for mut request in asks {
            let resources = self.resources(&request.call);
            let verdict = self.verdict(&request.call, request.effect, &resources);
            if verdict.permission != Permission::Ask {
                // Decided otherwise now (recorded); still asking needs no second record.
                self.audit_decision(&request.call, request.effect, resources, &verdict);
                match run.reconsider(&request.call.id, verdict.permission) {
                    Ok(Some(settled)) => self.settled(&settled),
                    Ok(None) => {}
                    Err(err) => return self.bug(run, &err),
                }
                if !self.checkpoint(run).await {
                    return;
                }
                continue;
            }
            if !verdict.asked_by_rule() {
                request.remember = Rule::remembering(&request.call.name, &resources);
                request.always_file = self.runner.permissions.answers().location();
            }
            request.resources = resources;
            request.confinement =
                self.runner.tools.get(&request.call.name).and_then(|tool| tool.confinement());
            self.events
                .emit(AgentEvent::ApprovalNeeded { call: request.call.clone(), effect: request.effect });
            let decision = tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    run.cancel(None);
                    return;
                }
                decision = self.runner.approver.approve(&request) => decision,
            };
            let remembered = self.remember(&request, decision).await;
            let event = AuditEvent::Answered { decision, remembered };
            self.audit(&request.call, request.effect, request.resources.clone(), event);
            match run.approval(&request.call.id, decision) {
                Ok(Some(settled)) => self.settled(&settled),
                Ok(None) => {}
                Err(err) => return self.bug(run, &err),
            }
            if !self.checkpoint(run).await {
                return;
            }
        }
    }

    /// Keeps what an answer "for this session" or "always" allows; the rules kept. An answer
    /// "always" that cannot be written holds for the session, and the user is warned.
    async fn remember(&self, request: &ApprovalRequest, decision: crate::Decision) -> Vec<Rule> {
        let Some(how) = decision.remembers() else { return Vec::new() };
        if request.remember.is_empty() {
            // Not offered (an explicit ask rule): the approval holds for this call only.
            return Vec::new();
        }
        let answers = Arc::clone(self.runner.permissions.answers());
        let rules = request.remember.clone();
        let session = self.cx.session_id;
        // "Always" writes a file: off the runtime's threads.
        let kept = tokio::task::spawn_blocking(move || answers.remember(session, &rules, how)).await;
        let warning = match kept {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(err) => Some(format!("the answer could not be kept ({err})")),
        };
        if let Some(message) = warning {
            tracing::warn!(%message, tool = %request.call.name, "an approval could not be remembered");
            self.events.emit(AgentEvent::Warning { message });
        }
        request.remember.clone()
    }

    /// Records that `call` ran (a tool that changes something or reaches outside), and how.
    pub(super) fn audit_executed(&self, call: &ToolCall, took: Duration, is_error: bool) {
        let Some(effect) = self.runner.tools.get(&call.name).map(|tool| tool.effect()) else { return };
        if effect == ToolEffect::ReadOnly {
            return;
        }
        let duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.audit(call, effect, self.resources(call), AuditEvent::Executed { ok: !is_error, duration_ms });
    }

    fn audit(&self, call: &ToolCall, effect: ToolEffect, resources: Vec<Resource>, event: AuditEvent) {
        self.runner.audit.record(AuditEntry {
            at: self.runner.metering.now(),
            session_id: Some(self.cx.session_id),
            agent: self.runner.agent.clone(),
            call_id: call.id.clone(),
            tool: call.name.clone(),
            effect,
            resources,
            event,
        });
    }
}
