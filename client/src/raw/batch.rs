//! [`RegionBatch`]: a call over many keys (a batch get or put, a
//! transaction's prewrite, commit or rollback) sent region by region.
//!
//! The batch holds the items it has not yet been answered for. Each piece
//! goes to the region of the first pending item and carries the pending
//! items inside the region that attempt is routed to, so a piece retried
//! after a split or merge carries exactly the keys the region now holds;
//! the caller settles the piece (its items leave the batch, or some stay
//! to be sent again) and asks for the next. [`RegionBatch::split_by_region`]
//! groups the items by the routes the cache knows now, for callers that
//! send several regions' pieces at once.
//!
//! A write's pieces all run under one session ticket: they are one write
//! of the session, with one `(session, sequence)` across every piece and
//! every attempt (see [`crate::session`]).

use std::future::Future;
use std::time::Duration;

use nokv_proto::kvrpcpb::kv_client::KvClient;
use nokv_proto::kvrpcpb::{Context, KvPair, Mutation, WriteSession};
use tonic::transport::Channel;

use super::retry::HasRegionError;
use super::RawClient;
use crate::region_cache::RegionRoute;
use crate::session::WriteTicket;
use crate::Result;

/// An item of a batch: what routes it is its key.
pub(crate) trait Keyed {
    /// The key that decides the item's region.
    fn key(&self) -> &[u8];
}

impl Keyed for Vec<u8> {
    fn key(&self) -> &[u8] {
        self
    }
}

impl Keyed for KvPair {
    fn key(&self) -> &[u8] {
        &self.key
    }
}

impl Keyed for Mutation {
    fn key(&self) -> &[u8] {
        &self.key
    }
}

/// The items of one call not yet answered for, sent region by region.
pub(crate) struct RegionBatch<I> {
    pending: Vec<I>,
}

impl<I: Keyed> RegionBatch<I> {
    /// A batch of `items`, none answered yet.
    pub fn new(items: Vec<I>) -> Self {
        RegionBatch { pending: items }
    }

    /// How many items are still pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Groups the items (sorted by key) by the region holding each, as the
    /// cache (or the coordinator) knows them now.
    pub async fn split_by_region(self, raw: &RawClient) -> Result<Vec<(RegionRoute, Self)>> {
        let mut groups: Vec<(RegionRoute, Vec<I>)> = Vec::new();
        for item in self.pending {
            if let Some((route, items)) = groups.last_mut() {
                if route.contains(item.key()) {
                    items.push(item);
                    continue;
                }
            }
            let route = raw.route(item.key()).await?;
            groups.push((route, vec![item]));
        }
        Ok(groups
            .into_iter()
            .map(|(route, items)| (route, RegionBatch::new(items)))
            .collect())
    }

    /// Sends the next piece: to the region of the first pending item, with
    /// retries until the client's deadline. `build` makes each attempt's
    /// request from the pending items inside the region it is routed to;
    /// with a `ticket`, every attempt carries its session. Returns the
    /// answer and the route it came along, or `None` when nothing is
    /// pending. The piece's items stay pending until [`Self::settle`].
    pub async fn send<T, F, Fut>(
        &self,
        raw: &RawClient,
        ticket: Option<&mut WriteTicket<'_>>,
        mut build: F,
    ) -> Result<Option<(T, RegionRoute)>>
    where
        T: HasRegionError,
        F: FnMut(KvClient<Channel>, Context, Option<WriteSession>, Duration, &[&I]) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let Some(first) = self.pending.first() else {
            return Ok(None);
        };
        let first = first.key().to_vec();
        let answer = raw
            .run(&first, ticket, |c, route, ctx, session, t| {
                let piece: Vec<&I> = self
                    .pending
                    .iter()
                    .filter(|i| route.contains(i.key()))
                    .collect();
                build(c, ctx, session, t, &piece)
            })
            .await?;
        Ok(Some(answer))
    }

    /// Settles the piece answered along `route`: its items leave the batch
    /// except those `again` picks, which are sent again.
    pub fn settle(&mut self, route: &RegionRoute, again: impl Fn(&I) -> bool) {
        self.pending
            .retain(|i| !route.contains(i.key()) || again(i));
    }

    /// Settles the piece answered along `route` as wholly done.
    pub fn done(&mut self, route: &RegionRoute) {
        self.settle(route, |_| false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: &RegionBatch<Vec<u8>>) -> Vec<&[u8]> {
        b.pending.iter().map(|k| k.as_slice()).collect()
    }

    #[test]
    fn settling_a_piece_removes_only_its_region_and_keeps_what_is_sent_again() {
        let mut b = RegionBatch::new(vec![b"a".to_vec(), b"k".to_vec(), b"x".to_vec()]);
        b.settle(&RegionRoute::over(b"", b"m"), |k| k.as_slice() == b"k");
        assert_eq!(keys(&b), vec![b"k".as_slice(), b"x".as_slice()]);
        b.done(&RegionRoute::over(b"", b"m"));
        assert_eq!(keys(&b), vec![b"x".as_slice()]);
        b.done(&RegionRoute::over(b"m", b""));
        assert_eq!(b.len(), 0);
    }
}
