//! A request that opens a server transaction, step by step as RFC 3261
//! §16 numbers them: validation (§16.3), whom it is for and whether we
//! relay it (§16.4 and the relay policy, doc/relay.md), its targets
//! (§16.5), and a copy forwarded to each (§16.6).

use super::*;

/// What a request that passed §16.3 and §16.4 carries on to §16.5.
struct Admitted<'b> {
    method: String,
    /// The copy to forward: our Route popped, credentials for us removed.
    fwd: Message<'b>,
    /// Our branch for it (§16.6 step 8; a fork index is added per target).
    branch: String,
    /// The authenticated caller, for accounting.
    caller: Option<String>,
    /// A Route of ours, signed for this Call-ID, was on top.
    route_proof: bool,
    /// The Contact one of our handles in the Request-URI stands for.
    handle: Option<String>,
    /// The user part and domain of ours the Request-URI names, when no
    /// Route is left: whom §16.5 looks up (or whose token it opens).
    local_user: Option<(String, String)>,
    call_id: String,
}

impl<P: Clone + Eq + std::hash::Hash> Proxy<P> {
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        stx: ServerTx,
        msg: &Message<'_>,
        bytes: &[u8],
        source: &P,
    ) {
        if let Err(e) = msg.check_mandatory_headers() {
            let reason = e.rejection().reason;
            self.reply(now, stx, msg, 400, &reason, &[]);
            return;
        }
        if msg.method().is_some_and(|m| m.as_str() == "CANCEL") {
            self.on_cancel(now, stx, msg);
            return;
        }
        let Some(branch) = self.validate(now, stx, msg) else {
            return;
        };
        let Some(admitted) = self.admit(now, stx, msg, bytes, source, branch) else {
            return;
        };
        let Some(targets) = self.targets(now, stx, msg, &admitted, source) else {
            return;
        };
        self.forward_to_targets(now, stx, msg, bytes, source, admitted, &targets);
    }

    /// §16.3 steps 3 to 5: Max-Forwards, loops, Proxy-Require. Our branch
    /// for the request if it passes; otherwise it was answered.
    fn validate(&mut self, now: Instant, stx: ServerTx, msg: &Message<'_>) -> Option<String> {
        // Step 3: Max-Forwards.
        if msg.max_forwards() == Some(0) {
            self.reply(now, stx, msg, 483, "Too Many Hops", &[]);
            return None;
        }
        // Step 4: loop detection. Our branches are `<hash>.<fork index>`.
        let branch = self.branch_for(msg);
        let ours = |b: &str| {
            b.strip_prefix(branch.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        };
        let looped = msg.vias().iter().any(|v| {
            let sent_by = match v.port {
                Some(p) => format!("{}:{p}", v.host),
                None => v.host.to_owned(),
            };
            self.is_our_name(&sent_by) && v.branch().is_some_and(ours)
        });
        if looped {
            self.reply(now, stx, msg, 482, "Loop Detected", &[]);
            return None;
        }
        // Step 5: Proxy-Require; we support no extensions.
        let unsupported: Vec<&str> = msg.option_tags(HeaderName::ProxyRequire).collect();
        if !unsupported.is_empty() {
            let extra = [format!("Unsupported: {}", unsupported.join(", "))];
            self.reply(now, stx, msg, 420, "Bad Extension", &extra);
            return None;
        }
        Some(branch)
    }

    /// Whom the request is for, and whether we relay it: requests for us
    /// (REGISTER, OPTIONS, our handles) are handled or answered here; the
    /// rest pass the Digest gate and the relay policy. `None` once the
    /// request was answered (or, for an ACK, dropped).
    fn admit<'b>(
        &mut self,
        now: Instant,
        stx: ServerTx,
        msg: &Message<'_>,
        bytes: &'b [u8],
        source: &P,
        branch: String,
    ) -> Option<Admitted<'b>> {
        let method = msg
            .method()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        // §16.3 step 2 (and RFC 4475 unknown schemes): sip and sips only.
        let Some(Uri::Sip(ruri)) = msg.request_uri_parsed() else {
            self.reply(now, stx, msg, 416, "Unsupported URI Scheme", &[]);
            return None;
        };
        let for_our_domain = self.is_our_domain(ruri.host);
        let has_user = ruri.user.is_some();
        // A request addressed to this proxy itself (sipsak, keep-alives).
        let to_us = self.is_us(&ruri);

        // §16.4: a Route naming us is ours to remove. Signed for this
        // Call-ID, it proves the request belongs to a dialog we
        // record-routed.
        let mut fwd = Message::parse_datagram(bytes, &self.limits).ok()?;
        let route_proof = self.pop_our_route(&mut fwd);
        let routed = !fwd.routes().is_empty();
        // A peer's credential ends here; ours for the next hop, if it is
        // a peer, is added per branch.
        remove_peer_credentials(&mut fwd);
        // A request to one of our Contact handles goes to the Contact it
        // stands for; that it opens for this Call-ID proves the request
        // belongs to the dialog. Our name with any other user part is
        // nobody: a handle of another dialog, of an ended one, or made up.
        // (With a Route left, the request still follows it, towards the
        // Contact the handle stands for.)
        let call_id = msg.call_id().unwrap_or_default().to_owned();
        let handle = if to_us {
            self.open_handle(&ruri, &call_id)
        } else {
            None
        };
        if to_us && !routed && handle.is_none() && has_user && !for_our_domain {
            if method != "ACK" {
                self.reply(now, stx, msg, 404, "Not Found (no such dialog)", &[]);
            }
            return None;
        }

        if method == "REGISTER" && !routed && for_our_domain {
            self.on_register(now, stx, msg, source);
            return None;
        }

        // A request for the proxy itself (a domain or our address, no
        // user): OPTIONS pings are answered, anything else is not allowed.
        if !routed && !has_user && (to_us || for_our_domain) {
            let allow = ["Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER".to_owned()];
            if method == "OPTIONS" {
                self.reply(now, stx, msg, 200, "OK", &allow);
            } else {
                self.reply(now, stx, msg, 405, "Method Not Allowed", &allow);
            }
            return None;
        }

        let caller = self.authenticate_caller(now, stx, msg, &method, &mut fwd, source)?;

        // The relay policy (doc/relay.md): we forward for our
        // authenticated users and trusted peers, into our domains, along
        // our own signed Record-Route, and to explicitly routed domains.
        // Anything else would make us an open relay, and behind an onion
        // service a request sent where an attacker listens unmasks us.
        let allowed = caller.is_some()
            || route_proof
            || handle.is_some()
            || (!routed && for_our_domain)
            || (!routed && self.cfg.relay.is_routed(ruri.host))
            || self.cfg.relay.is_trusted((self.origin_of)(source));
        if !allowed {
            if method != "ACK" {
                self.reply(now, stx, msg, 403, "Relay Forbidden", &[]);
            }
            return None;
        }
        let local_user = match ruri.user {
            Some(user) if !routed && for_our_domain => {
                Some((user.to_owned(), ruri.host.to_ascii_lowercase()))
            }
            _ => None,
        };
        Some(Admitted {
            method,
            fwd,
            branch,
            caller,
            route_proof,
            handle,
            local_user,
            call_id,
        })
    }

    /// Our users' out-of-dialog requests carry credentials (RFC 3261
    /// §22.3); ACK and CANCEL cannot be challenged. `Some(caller)` (none
    /// when the request needs no credentials) if it may go on; `None`
    /// once it was challenged or refused.
    fn authenticate_caller(
        &mut self,
        now: Instant,
        stx: ServerTx,
        msg: &Message<'_>,
        method: &str,
        fwd: &mut Message<'_>,
        source: &P,
    ) -> Option<Option<String>> {
        let from_host = msg
            .from()
            .and_then(|f| f.uri.as_sip().map(|u| u.host.to_ascii_lowercase()));
        let in_dialog = msg.to().is_some_and(|t| t.tag().is_some());
        let Some(realm) = from_host.filter(|h| {
            self.cfg.authenticate && !in_dialog && method != "ACK" && self.is_our_domain(h)
        }) else {
            return Some(None);
        };
        let user = self.authenticate(now, stx, msg, &realm, true, source)?;
        // One may call only as oneself: a plain From user names the
        // authenticated one (a token's was compared when it opened).
        let from_user = msg.from().and_then(|f| f.uri.as_sip().and_then(|u| u.user));
        if let Some(from) = from_user
            && !Token::looks_like(from)
            && from != user
        {
            self.reply(
                now,
                stx,
                msg,
                403,
                "From Is Not The Authenticated User",
                &[],
            );
            return None;
        }
        // §22.3: credentials for our realm end here.
        fwd.remove_credentials(HeaderName::ProxyAuthorization, &realm);
        Some(Some(user))
    }

    /// §16.5: the targets (requests for our domains without a user were
    /// answered before). `None` once the request was answered.
    fn targets(
        &mut self,
        now: Instant,
        stx: ServerTx,
        msg: &Message<'_>,
        admitted: &Admitted<'_>,
        source: &P,
    ) -> Option<Vec<String>> {
        if let Some(contact) = &admitted.handle {
            return Some(vec![contact.clone()]);
        }
        let Some((user, domain)) = &admitted.local_user else {
            return Some(vec![msg.request_uri().unwrap_or_default().to_owned()]);
        };
        // The callee's proxy opens a PrivaSIP callee token to route.
        let user = match self.real_user(user, &admitted.call_id, source, now) {
            Ok(user) => user,
            Err(why) => {
                self.refuse_token(now, stx, msg, why);
                return None;
            }
        };
        let aor = format!("sip:{user}@{domain}");
        let found: Vec<String> = self
            .registrar
            .lookup(&aor, now)
            .into_iter()
            .map(|b| b.contact.into_inner())
            .collect();
        if found.is_empty() {
            self.reply(now, stx, msg, 480, "Temporarily Unavailable", &[]);
            return None;
        }
        Some(found)
    }

    /// §16.6: a copy to each target, and the transaction's state; or the
    /// answer when no target could be reached.
    #[allow(clippy::too_many_arguments)]
    fn forward_to_targets(
        &mut self,
        now: Instant,
        stx: ServerTx,
        msg: &Message<'_>,
        bytes: &[u8],
        source: &P,
        admitted: Admitted<'_>,
        targets: &[String],
    ) {
        let Admitted {
            method,
            fwd,
            branch,
            caller,
            route_proof,
            handle,
            call_id,
            ..
        } = admitted;
        if method == "INVITE" {
            // §16.2: 100 Trying, so the upstream stops retransmitting.
            self.reply(now, stx, msg, 100, "Trying", &[]);
        }
        let mut call = Fwd {
            from: source.clone(),
            invite: method == "INVITE",
            // Only a BYE in a dialog we record-routed ends its accounting
            // record: anyone may send a BYE with someone's Call-ID.
            bye: method == "BYE" && route_proof,
            caller,
            request: bytes.to_vec(),
            pending: Vec::new(),
            best: None,
            done: false,
            hidden_vias: None,
        };
        let mut no_hop = NoHop::Unroutable;
        for (i, target) in targets.iter().enumerate() {
            let branch = format!("{branch}.{i}");
            match self.forward(now, &fwd, target, &branch, source, &mut call.hidden_vias) {
                Ok((ctx, sent)) => {
                    self.by_client.insert(ctx, stx);
                    if call.invite {
                        self.timer_c.start(now, ctx);
                    }
                    call.pending.push((ctx, sent));
                }
                Err(e) => no_hop = no_hop.max(e),
            }
        }
        if route_proof {
            self.call_request(now, msg);
        }
        // Once a BYE of the dialog passed through us, its handles are
        // refused (for as long as we remember: ENDED_DIALOGS).
        if method == "BYE" && (route_proof || handle.is_some()) {
            self.ended.entry(call_id, || now, |_| false, |at| *at);
        }
        if call.pending.is_empty() {
            let (code, reason) = match no_hop {
                // A flow-bound contact whose connection closed: the user is
                // registered but cannot be reached until it registers again.
                NoHop::FlowGone => (480, "Temporarily Unavailable"),
                NoHop::Refused(_) => (403, "Forbidden (destination not allowed)"),
                NoHop::Unroutable => (404, "Not Found (no route to the target)"),
                NoHop::TooLarge => (513, "Message Too Large (too many Vias to hide)"),
            };
            self.reply(now, stx, msg, code, reason, &[]);
            return;
        }
        self.calls.insert(stx, call);
    }
}
