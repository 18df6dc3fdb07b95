/**
 * Who is online in the open channel: the list from the REST API, kept moving between fetches
 * by `user.status`, and the exact count from `channel.presence`.
 */
import type { ChannelPresenceEvent, OnlineUser, UserStatusEvent } from "../types";
import { withPresence } from "../unread";
import type { Session } from "./session";

const ONLINE_LIST_CAP = 1000;
/** Several `channel.presence` in quick succession refetch the list once. */
const REFETCH_DELAY_MS = 300;

export class Presence {
  private readonly session: Session;

  constructor(session: Session) {
    this.session = session;
  }

  async fetchOnline(name: string): Promise<void> {
    const { store } = this.session;
    try {
      const users = await this.session.api.online(name);
      if (store.state.current !== name) return;
      // The list is capped; the count from `channel.presence` is exact beyond that. Whoever it
      // lists is online, in the direct-message list too.
      let dms = store.state.dms;
      for (const u of users) dms = withPresence(dms, u.userId, true, new Date());
      store.set({ online: sortUsers(users), dms, ...(users.length < ONLINE_LIST_CAP ? { onlineCount: users.length } : {}) });
    } catch (e) {
      this.session.handleApiError(e);
    }
  }

  onUserStatus = (e: UserStatusEvent): void => {
    if (!e || typeof e.userId !== "string") return;
    const { store } = this.session;
    // `user.status` reaches the channels the user is in, so it moves this channel's count at
    // once; the coalesced `channel.presence` confirms it within a second or two.
    const listed = store.state.online.some((u) => u.userId === e.userId);
    const others = store.state.online.filter((u) => u.userId !== e.userId);
    const count = store.state.onlineCount;
    // The direct-message list shows the same person's presence: it follows the event too.
    store.set({ dms: withPresence(store.state.dms, e.userId, e.status === "online", new Date()) });
    if (e.status === "online") {
      store.set({
        online: sortUsers([...others, { userId: e.userId, username: e.username }]),
        onlineCount: !listed && count !== null ? count + 1 : count,
      });
    } else {
      store.set({
        online: others,
        onlineCount: listed && count !== null ? Math.max(0, count - 1) : count,
        typing: store.state.typing.filter((t) => t.userId !== e.userId),
      });
    }
  };

  onChannelPresence = (e: ChannelPresenceEvent): void => {
    const { store } = this.session;
    if (!e || e.channel !== store.state.current) return;
    store.set({ onlineCount: e.online });
    const name = e.channel;
    this.session.later("online", REFETCH_DELAY_MS, () => void this.fetchOnline(name));
  };
}

function sortUsers(users: OnlineUser[]): OnlineUser[] {
  const seen = new Set<string>();
  return users
    .filter((u) => (seen.has(u.userId) ? false : (seen.add(u.userId), true)))
    .sort((a, b) => a.username.localeCompare(b.username));
}
