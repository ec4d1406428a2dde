//! The proxy's side of topology hiding: what it takes out of a message
//! crossing a hidden link and puts back on what comes back (module
//! `hide` seals and opens; doc/privasip.md says what and why).

use super::*;

impl<P: Clone + Eq + std::hash::Hash> Proxy<P> {
    /// Sets the links on which our side's topology is hidden (default
    /// [`Hiding::Tor`]; module `hide`): Vias, Record-Routes, Contacts and
    /// our users' domain in From.
    pub fn set_topology_hiding(&mut self, hiding: Hiding) {
        self.hiding = hiding;
    }

    /// Whether the link to `peer` is hidden.
    pub(super) fn hides(&self, peer: &P) -> bool {
        match self.hiding {
            Hiding::Off => false,
            Hiding::All => true,
            Hiding::Tor => self.tor.as_ref().is_some_and(|t| (t.is_tor)(peer)),
        }
    }

    /// The Contact a handle of ours at `uri` stands for, in the dialog
    /// `call_id`; `None` if `uri` is not ours, not a handle, or its dialog
    /// ended.
    pub(super) fn open_handle(&self, uri: &SipUri<'_>, call_id: &str) -> Option<String> {
        if !self.is_us(uri) || self.ended.get(&call_id.to_owned()).is_some() {
            return None;
        }
        let user = uri.user?;
        let mut parts = self.sealer.open(Kind::Contact, &[call_id], user)?;
        (parts.len() == 1).then(|| parts.remove(0))
    }

    /// Replaces the Contact of `m` (about to cross a hidden link towards
    /// `peer`) by a handle at our name for that link.
    pub(super) fn mask_contact(
        &mut self,
        m: &mut Message<'_>,
        call_id: &str,
        peer: &P,
        transport: &str,
    ) {
        let Some(ContactValue::Addrs(addrs)) = m.contacts() else {
            return;
        };
        let Some(first) = addrs.first() else { return };
        if let Uri::Sip(u) = &first.uri
            && self.is_us(u)
        {
            return;
        }
        let uri = first.uri_raw;
        let key = std::hash::BuildHasher::hash_one(&self.handle_keys, (call_id, uri));
        let cached = self
            .handles
            .get(&key)
            .filter(|h| h.call_id == call_id && h.contact == uri)
            .map(|h| h.handle.clone());
        let handle = match cached {
            Some(h) => Some(h),
            None => {
                let mut h = String::new();
                self.sealer
                    .seal_into(&mut h, &mut self.rng, Kind::Contact, &[call_id], &[uri])
                    .map(|()| {
                        if self.handles.len() >= HANDLE_CACHE {
                            self.handles.clear();
                        }
                        let entry = Handle {
                            call_id: call_id.to_owned(),
                            contact: uri.to_owned(),
                            handle: h.clone(),
                        };
                        self.handles.insert(key, entry);
                        h
                    })
            }
        };
        let name = self.sent_by_for(&[peer]);
        let value = handle.map(|h| {
            let mut v = String::with_capacity(h.len() + name.len() + 32);
            v.push_str("<sip:");
            v.push_str(&h);
            v.push('@');
            v.push_str(name);
            v.push_str(";transport=");
            v.push_str(transport);
            v.push('>');
            v
        });
        m.remove_header(HeaderName::Contact);
        if let Some(v) = value {
            let _ = m.set_header(HeaderName::Contact, v);
        }
    }

    /// Puts back on a response what we hid from the request it answers:
    /// the Vias below ours and our user's domain in From (sealed in our
    /// Via, `top`, which the caller has popped, or `known` from the
    /// transaction), and the Record-Routes below ours (sealed in our
    /// Record-Route entry).
    pub(super) fn unhide_response(
        &self,
        up: &mut Message<'_>,
        top: &Via<'_>,
        known: Option<&[String]>,
    ) {
        let call_id = up.call_id().unwrap_or_default().to_owned();
        let opened;
        let hidden = match top.params.get(VIA_PARAM).flatten() {
            None => None,
            Some(_) if known.is_some() => known,
            Some(sealed) => {
                opened = self.sealer.open(
                    Kind::Vias,
                    &[&call_id, top.branch().unwrap_or_default()],
                    sealed,
                );
                opened.as_deref()
            }
        };
        if let Some((from_host, vias)) = hidden.and_then(<[String]>::split_first) {
            // Checked when they arrived, and sealed or kept since: no one
            // else could have changed them.
            for v in vias.iter().rev() {
                let _ = up.push_checked_via(v.clone());
            }
            let anonymous = up
                .from()
                .and_then(|f| f.uri.as_sip().map(|u| u.host == ANONYMOUS_HOST))
                .unwrap_or(false);
            if !from_host.is_empty() && anonymous {
                let _ = up.set_host(HeaderName::From, from_host);
            }
        }
        // Only a Record-Route we sealed something into needs parsing.
        if !up
            .values(HeaderName::RecordRoute)
            .any(|v| v.contains(ROUTES_MARKER))
        {
            return;
        }
        let entries: Vec<String> = up
            .address_texts(HeaderName::RecordRoute)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut restored = Vec::with_capacity(entries.len());
        let mut any = false;
        for e in entries {
            // Ours are always written `<uri>`.
            let uri = match (e.find('<'), e.find('>')) {
                (Some(a), Some(b)) => e.get(a + 1..b).unwrap_or_default(),
                _ => "",
            };
            let hidden = match Uri::parse(uri) {
                Ok(Uri::Sip(u)) if self.is_us(&u) => u
                    .params
                    .get(ROUTES_PARAM)
                    .flatten()
                    .and_then(|sealed| self.sealer.open(Kind::Routes, &[&call_id], sealed)),
                _ => None,
            };
            restored.push(e);
            if let Some(h) = hidden {
                any = true;
                restored.extend(h);
            }
        }
        if any {
            up.remove_header(HeaderName::RecordRoute);
            for e in restored {
                let _ = up.append_header("Record-Route", e);
            }
        }
    }

    /// Masks the Contact of a 1xx/2xx response going up to `to` over a
    /// hidden link (a 3xx's Contacts are where to try next: they pass).
    pub(super) fn mask_response_contact(&mut self, up: &mut Message<'_>, to: &P) {
        if !self.hides(to) || up.status().is_none_or(|s| s >= 300) {
            return;
        }
        let call_id = up.call_id().unwrap_or_default().to_owned();
        let transport = up
            .top_via()
            .map_or("udp".to_owned(), |v| v.transport.to_ascii_lowercase());
        self.mask_contact(up, &call_id, to, &transport);
    }
}
