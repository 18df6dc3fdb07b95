import { describe, expect, it } from "vitest";
import { countMention, lastSeenLabel, markRead, mergeFetched, unreadLabel, unreadOf, updateDm, updateNamed, withCreated, withPresence } from "./unread";
import type { Channel, DirectMessage } from "./types";

const ch = (name: string, extra: Partial<Channel> = {}): Channel => ({ name, description: "", private: false, createdAt: "", first_seq: 1, ...extra });

describe("unread counts", () => {
  it("shows none for the open channel", () => {
    const c = ch("dev", { read_seq: 3, unread: 4, unread_mentions: 1 });
    expect(unreadOf(c, "dev")).toEqual({ unread: 0, mentions: 0 });
    expect(unreadOf(c, "general")).toEqual({ unread: 4, mentions: 1 });
    expect(unreadOf(undefined, null)).toEqual({ unread: 0, mentions: 0 });
  });

  it("a read clears the counts and the position never moves back", () => {
    const c = ch("dev", { read_seq: 10, unread: 4, unread_mentions: 2 });
    expect(markRead(c, 12)).toMatchObject({ read_seq: 12, unread: 0, unread_mentions: 0 });
    expect(markRead(c, 5)).toMatchObject({ read_seq: 10, unread: 0, unread_mentions: 0 });
    const clear = ch("dev", { read_seq: 10, unread: 0, unread_mentions: 0 });
    expect(markRead(clear, 9)).toBe(clear);
  });

  it("a mention counts once more of each, unless it is already read", () => {
    const c = ch("dev", { read_seq: 10, unread: 1, unread_mentions: 0 });
    expect(countMention(c, 11)).toMatchObject({ unread: 2, unread_mentions: 1 });
    expect(countMention(c, 9)).toBe(c);
    expect(countMention(ch("new"), 1)).toMatchObject({ unread: 1, unread_mentions: 1 });
  });

  it("fresh counts win, except where this tab read further since", () => {
    const held = [ch("a", { read_seq: 20, unread: 0 }), ch("b", { read_seq: 5, unread: 0 })];
    const fresh = [ch("a", { read_seq: 15, unread: 3, unread_mentions: 1 }), ch("b", { read_seq: 5, unread: 2 }), ch("c")];
    expect(mergeFetched(fresh, held)).toEqual([
      ch("a", { read_seq: 20, unread: 0, unread_mentions: 0 }),
      ch("b", { read_seq: 5, unread: 2 }),
      ch("c"),
    ]);
  });

  it("updates one entry of the channel or direct-message list, or none", () => {
    const list = [ch("a"), ch("b")];
    expect(updateNamed(list, "zz", (c) => ({ ...c, unread: 1 }))).toBe(list);
    expect(updateNamed(list, "b", (c) => ({ ...c, unread: 1 }))[1]!.unread).toBe(1);
    const dms: DirectMessage[] = [{ channel: ch("dm-1"), user: { id: "u", username: "ann", online: true } }];
    expect(updateDm(dms, "dm-1", (c) => c)).toBe(dms);
    expect(updateDm(dms, "dm-1", (c) => countMention(c, 1))[0]!.channel.unread_mentions).toBe(1);
  });

  it("says the counts in words", () => {
    expect(unreadLabel("dev", { unread: 0, mentions: 0 })).toBe("dev");
    expect(unreadLabel("dev", { unread: 3, mentions: 1 })).toBe("dev, 3 unread, 1 mention");
    expect(unreadLabel("ann", { unread: 2, mentions: 2 })).toBe("ann, 2 unread, 2 mentions");
  });
});

describe("last seen", () => {
  const now = new Date("2025-03-10T12:00:00Z");
  it("reads as a person would say it", () => {
    expect(lastSeenLabel(undefined, now)).toBe("offline");
    expect(lastSeenLabel("2025-03-10T11:59:30Z", now)).toBe("last seen just now");
    expect(lastSeenLabel("2025-03-10T11:55:00Z", now)).toBe("last seen 5 minutes ago");
    expect(lastSeenLabel("2025-03-10T11:00:00Z", now)).toBe("last seen 1 hour ago");
    expect(lastSeenLabel("2025-03-08T12:00:00Z", now)).toBe("last seen 2 days ago");
    expect(lastSeenLabel("2025-01-03T12:00:00Z", now)).toBe("last seen on January 3");
  });
});

describe("a channel created by someone else", () => {
  const ch = (name: string, extra = {}) => ({ name, description: "", private: false, createdAt: "2025-01-01T00:00:00Z", first_seq: 1, ...extra });
  it("joins the list in its place by name", () => {
    expect(withCreated([ch("alpha"), ch("gamma")], ch("beta")).map((c) => c.name)).toEqual(["alpha", "beta", "gamma"]);
  });
  it("leaves a channel already listed as it is", () => {
    const held = [ch("alpha", { unread: 3 })];
    expect(withCreated(held, ch("alpha"))).toEqual(held);
  });
});

describe("a direct message's presence follows user.status", () => {
  const dm = (id: string, online: boolean, last_seen?: string) => ({
    channel: { name: `dm-${id}`, description: "", private: true, createdAt: "2025-01-01T00:00:00Z", first_seq: 1 },
    user: { id, username: id, online, ...(last_seen ? { last_seen } : {}) },
  });
  const at = new Date("2025-06-01T10:00:00Z");
  it("someone who signs in just after the list was fetched shows online at once", () => {
    const list = [dm("ann", false, "2025-06-01T09:59:59Z"), dm("ben", false)];
    const next = withPresence(list, "ann", true, at);
    expect(next[0]!.user).toEqual({ id: "ann", username: "ann", online: true });
    expect(next[1]).toBe(list[1]);
  });
  it("someone who leaves is last seen then; nothing changes for a state already shown", () => {
    const list = [dm("ann", true)];
    expect(withPresence(list, "ann", false, at)[0]!.user).toEqual({ id: "ann", username: "ann", online: false, last_seen: at.toISOString() });
    expect(withPresence(list, "ann", true, at)).toBe(list);
  });
});
