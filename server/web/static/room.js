// room.js - a room as a page shows it: the snapshot's state with each event folded in,
// the same way server/domain/evolve.py folds them (the server stays the authority:
// a snapshot after a reconnect replaces whatever was folded here).

const FEED_LIMIT = 200;

export class RoomModel {
  constructor(snapshot) {
    this.reset(snapshot);
  }

  /** Start over from a snapshot (join, or history too short to resume). */
  reset(snapshot) {
    const s = snapshot.state;
    this.room = snapshot.room;
    this.seq = snapshot.seq;
    this.status = s.status;
    this.title = s.title;
    this.bag = [...s.bag];
    this.pinned = s.pinned ?? null;
    this.giveaways = { ...s.giveaways };
    this.flashSales = { ...s.flash_sales };
    this.billboard = s.billboard ?? null;
    this.commentSettings = { ...s.comment_settings };
    this.muted = { ...s.muted };
    this.blocked = { ...s.blocked };
    this.liveEvents = { ...s.live_events };
    this.productSets = { ...s.product_sets };
    this.versions = { ...s.versions };
    this.current = s.current ? { ...s.current } : null;
    this.violations = [...s.violations];
    this.comments = [];
    this.activity = [];
    this.log = []; // every event applied, in seq order (what a test reads back)
    this.series = (s.current?.per_minute ?? []).map((b) => ({
      t: (s.current.started_at ?? 0) + b.minute * 60000, viewers: b.viewers,
    }));
    this.figures = {
      viewers: s.current?.viewers ?? 0, orders: s.current?.orders ?? 0,
      gmv_cents: s.current?.gmv_cents ?? 0,
    };
  }

  /** Fold one event (in seq order) into the model. */
  apply(event) {
    const b = event.body;
    this.seq = event.seq;
    this.log.push({ seq: event.seq, type: b.type, by: event.by });
    switch (b.type) {
      case "live_started":
        this.status = "live";
        this.title = b.title;
        this.figures = { viewers: 0, orders: 0, gmv_cents: 0 };
        this.series = [];
        break;
      case "live_ended":
        this.status = "offline";
        this.pinned = null;
        this.billboard = null;
        break;
      case "product_added":
        this.bag.splice(b.position, 0, b.item);
        break;
      case "product_deleted":
        this.bag = this.bag.filter((i) => i.product_id !== b.product_id);
        if (this.pinned === b.product_id) this.pinned = null;
        break;
      case "product_pinned":
        this.pinned = b.product_id;
        break;
      case "product_unpinned":
        this.pinned = null;
        break;
      case "product_moved": {
        const item = this.bag.find((i) => i.product_id === b.product_id);
        this.bag = this.bag.filter((i) => i.product_id !== b.product_id);
        if (item) this.bag.splice(b.position, 0, item);
        break;
      }
      case "giveaway_ready":
        this.giveaways[b.giveaway.giveaway_id] = b.giveaway;
        break;
      case "giveaway_deployed":
        this.giveaways[b.giveaway_id] = {
          ...this.giveaways[b.giveaway_id], deployed_at: event.at, ends_at: b.ends_at,
        };
        break;
      case "giveaway_ended":
        if (this.giveaways[b.giveaway_id]) {
          this.giveaways[b.giveaway_id] = { ...this.giveaways[b.giveaway_id], ended: true };
        }
        break;
      case "flash_sale_ready":
        this.flashSales[b.sale.sale_id] = b.sale;
        break;
      case "flash_sale_deployed":
        this.flashSales[b.sale_id] = {
          ...this.flashSales[b.sale_id], starts_at: b.starts_at, ends_at: b.ends_at,
        };
        break;
      case "flash_sale_ended":
        this.flashSales[b.sale_id] = { ...this.flashSales[b.sale_id], ended: true };
        break;
      case "billboard_deployed":
        this.billboard = b.billboard;
        break;
      case "billboard_taken_down":
        this.billboard = null;
        break;
      case "comment_settings_changed":
        this.commentSettings = { ...b.settings };
        break;
      case "user_muted":
        this.muted[b.user_id] = b.until;
        for (const c of this.comments) if (c.user.unique_id === b.user_id) c.hidden ??= "muted";
        break;
      case "user_unmuted":
        delete this.muted[b.user_id];
        break;
      case "user_blocked":
        this.blocked[b.user_id] = b.until;
        for (const c of this.comments) if (c.user.unique_id === b.user_id) c.hidden ??= "blocked";
        break;
      case "user_unblocked":
        delete this.blocked[b.user_id];
        break;
      case "live_event_scheduled":
      case "live_event_edited":
        this.liveEvents[b.event.event_id] = b.event;
        break;
      case "live_event_cancelled":
        if (this.liveEvents[b.event_id]) {
          this.liveEvents[b.event_id] = { ...this.liveEvents[b.event_id], cancelled: true };
        }
        break;
      case "product_set_saved":
        this.productSets[b.product_set.set_id] = b.product_set;
        break;
      case "product_set_deleted":
        delete this.productSets[b.set_id];
        break;
      case "comment_posted":
        this.comments.push({ ...b, at: event.at });
        this.comments.splice(0, this.comments.length - FEED_LIMIT);
        break;
      case "order_placed":
        this._order(b);
        this._activity(event, `${b.user.nickname || b.user.unique_id} ordered ${b.quantity} × ${b.product_id}`
          + (b.sale_id ? " (flash sale)" : ""));
        break;
      case "gift_sent":
        if (b.repeat_end) this._activity(event, `${b.user.nickname || b.user.unique_id} sent ${b.repeat_count} × ${b.gift_name || "gift"}`);
        break;
      case "subscribed":
        this._activity(event, `${b.user.nickname || b.user.unique_id} subscribed (month ${b.month})`);
        break;
      case "followed":
        this._activity(event, `${b.user.nickname || b.user.unique_id} followed`);
        break;
      case "viewers_changed":
        this.figures.viewers = b.total;
        this._sample(event.at);
        break;
      case "violation_reported":
        this.violations.push(b.violation);
        break;
      default:
        break;
    }
  }

  _order(b) {
    this.bag = this.bag.map((i) => (i.product_id === b.product_id
      ? { ...i, stock: Math.max(0, i.stock - b.quantity) } : i));
    if (b.sale_id && this.flashSales[b.sale_id]) {
      const sale = this.flashSales[b.sale_id];
      this.flashSales[b.sale_id] = { ...sale, sold: sale.sold + b.quantity };
    }
    this.figures.orders += 1;
    this.figures.gmv_cents += b.amount_cents;
    this._sample(Date.now());
  }

  _activity(event, text) {
    this.activity.push({ seq: event.seq, at: event.at, kind: event.body.type, text });
    this.activity.splice(0, this.activity.length - FEED_LIMIT);
  }

  _sample(at) {
    this.series.push({ t: at, viewers: this.figures.viewers, orders: this.figures.orders,
                       gmv_cents: this.figures.gmv_cents });
    this.series.splice(0, this.series.length - 120);
  }

  /** A flash sale's stock left (never below zero). */
  static stockLeft(sale) {
    return Math.max(0, sale.stock - (sale.sold ?? 0));
  }
}
