"use client";

import type { Channel, DirectMessage, User } from "@/lib/types";
import { badgeCount, lastSeenLabel, unreadLabel, unreadOf, type Unread } from "@/lib/unread";
import { Avatar } from "./Avatar";
import { HashIcon, LockIcon, LogOutIcon, Logo, PlusIcon, ServerIcon } from "./icons";

/** The unread count of an entry, and its mentions apart (what matters most stands out). */
function Badges({ unread, active }: { unread: Unread; active: boolean }) {
  if (unread.unread === 0 && unread.mentions === 0) return null;
  return (
    <span className="ml-auto flex shrink-0 items-center gap-1" aria-hidden="true">
      {unread.mentions > 0 ? (
        <span className="rounded-full bg-rose-500 px-1.5 text-[11px] font-bold leading-[18px] text-white" title="Mentions">
          @{badgeCount(unread.mentions)}
        </span>
      ) : null}
      {unread.unread > unread.mentions ? (
        <span
          className={`rounded-full px-1.5 text-[11px] font-semibold leading-[18px] ${active ? "bg-white/25 text-white" : "bg-slate-700 text-slate-100"}`}
          title="Unread messages"
        >
          {badgeCount(unread.unread)}
        </span>
      ) : null}
    </span>
  );
}

/**
 * Channels, direct messages, the create buttons and the signed-in user; for administrators, the
 * entry of the cluster page too.
 */
export function Sidebar({
  user,
  channels,
  dms,
  current,
  joining,
  now,
  admin = false,
  clusterOpen = false,
  onSelect,
  onCreate,
  onNewDm,
  onCluster,
  onLogout,
}: {
  user: User;
  channels: Channel[];
  dms: DirectMessage[];
  current: string | null;
  joining: string | null;
  now: Date;
  /** The user is an administrator: the cluster page is offered. */
  admin?: boolean;
  /** The cluster page is open (no channel is then the current page). */
  clusterOpen?: boolean;
  onSelect: (name: string) => void;
  onCreate: () => void;
  onNewDm: () => void;
  onCluster?: () => void;
  onLogout: () => void;
}) {
  return (
    <div className="flex h-full flex-col bg-slate-900 text-slate-300">
      <div className="flex h-14 shrink-0 items-center gap-2.5 border-b border-white/5 px-4">
        <Logo className="h-7 w-7" />
        <span className="text-[17px] font-semibold tracking-tight text-white">banter</span>
      </div>

      <div className="flex min-h-0 flex-1 flex-col overflow-y-auto">
      <nav aria-label="Channels" className="flex flex-col px-2 pt-4 pb-2">
        <div className="mb-1 flex items-center justify-between px-2">
          <h2 className="text-xs font-semibold uppercase tracking-wider text-slate-500">Channels</h2>
          <button
            type="button"
            onClick={onCreate}
            aria-label="Create channel"
            title="Create channel"
            className="rounded-md p-1 text-slate-400 hover:bg-white/10 hover:text-white focus-visible:outline-2 focus-visible:outline-brand-500"
          >
            <PlusIcon className="h-4 w-4" />
          </button>
        </div>
        <ul className="space-y-0.5">
          {channels.map((c) => {
            const active = !clusterOpen && c.name === current;
            const unread = unreadOf(c, current);
            const bold = unread.unread > 0 || unread.mentions > 0;
            return (
              <li key={c.name}>
                <button
                  type="button"
                  onClick={() => onSelect(c.name)}
                  aria-current={active ? "page" : undefined}
                  aria-label={unreadLabel(c.name, unread) + (c.private ? " (private)" : "")}
                  title={c.description ?? undefined}
                  className={`group flex w-full items-center gap-2 rounded-md px-2 py-1.5 text-left text-[15px] transition focus-visible:outline-2 focus-visible:outline-brand-500 ${
                    active ? "bg-brand-600 font-medium text-white" : `hover:bg-white/5 hover:text-white ${bold ? "font-semibold text-white" : ""}`
                  }`}
                >
                  {c.private ? (
                    <LockIcon className={`h-4 w-4 shrink-0 ${active ? "text-indigo-200" : "text-slate-500"}`} />
                  ) : (
                    <HashIcon className={`h-4 w-4 shrink-0 ${active ? "text-indigo-200" : "text-slate-500"}`} />
                  )}
                  <span className="truncate">{c.name}</span>
                  {joining === c.name ? (
                    <span className="ml-auto h-3 w-3 animate-spin rounded-full border-2 border-slate-500 border-t-white" aria-hidden="true" />
                  ) : (
                    <Badges unread={unread} active={active} />
                  )}
                </button>
              </li>
            );
          })}
          {channels.length === 0 ? <li className="px-2 py-1.5 text-sm text-slate-500">No channels yet</li> : null}
        </ul>
      </nav>

      <nav aria-label="Direct messages" className="flex flex-col px-2 pt-2 pb-4">
        <div className="mb-1 flex items-center justify-between px-2">
          <h2 className="text-xs font-semibold uppercase tracking-wider text-slate-500">Direct messages</h2>
          <button
            type="button"
            onClick={onNewDm}
            aria-label="New direct message"
            title="New direct message"
            className="rounded-md p-1 text-slate-400 hover:bg-white/10 hover:text-white focus-visible:outline-2 focus-visible:outline-brand-500"
          >
            <PlusIcon className="h-4 w-4" />
          </button>
        </div>
        <ul className="space-y-0.5">
          {dms.map((d) => {
            const name = d.channel.name;
            const active = !clusterOpen && name === current;
            const unread = unreadOf(d.channel, current);
            const bold = unread.unread > 0 || unread.mentions > 0;
            const presence = d.user.online ? "online" : lastSeenLabel(d.user.last_seen, now);
            return (
              <li key={name}>
                <button
                  type="button"
                  onClick={() => onSelect(name)}
                  aria-current={active ? "page" : undefined}
                  aria-label={`${unreadLabel(d.user.username, unread)} (${presence})`}
                  className={`flex w-full items-center gap-2 rounded-md px-2 py-1.5 text-left text-[15px] transition focus-visible:outline-2 focus-visible:outline-brand-500 ${
                    active ? "bg-brand-600 font-medium text-white" : `hover:bg-white/5 hover:text-white ${bold ? "font-semibold text-white" : ""}`
                  }`}
                >
                  <span className="relative inline-flex shrink-0" aria-hidden="true">
                    <span
                      className={`h-2.5 w-2.5 rounded-full ${d.user.online ? "bg-emerald-500" : "ring-2 ring-inset ring-slate-500"}`}
                    />
                  </span>
                  <span className="min-w-0 flex-1">
                    <span className="block truncate">{d.user.username}</span>
                    {d.user.online ? null : (
                      <span className={`block truncate text-[11px] font-normal ${active ? "text-indigo-200" : "text-slate-500"}`}>{presence}</span>
                    )}
                  </span>
                  {joining === name ? (
                    <span className="ml-auto h-3 w-3 animate-spin rounded-full border-2 border-slate-500 border-t-white" aria-hidden="true" />
                  ) : (
                    <Badges unread={unread} active={active} />
                  )}
                </button>
              </li>
            );
          })}
          {dms.length === 0 ? <li className="px-2 py-1.5 text-sm text-slate-500">No conversations yet</li> : null}
        </ul>
      </nav>

      {admin && onCluster ? (
        <nav aria-label="Administration" className="flex flex-col px-2 pb-4">
          <h2 className="mb-1 px-2 text-xs font-semibold uppercase tracking-wider text-slate-500">Administration</h2>
          <button
            type="button"
            onClick={onCluster}
            aria-current={clusterOpen ? "page" : undefined}
            className={`flex w-full items-center gap-2 rounded-md px-2 py-1.5 text-left text-[15px] transition focus-visible:outline-2 focus-visible:outline-brand-500 ${
              clusterOpen ? "bg-brand-600 font-medium text-white" : "hover:bg-white/5 hover:text-white"
            }`}
          >
            <ServerIcon className={`h-4 w-4 shrink-0 ${clusterOpen ? "text-indigo-200" : "text-slate-500"}`} />
            <span className="truncate">Cluster</span>
          </button>
        </nav>
      ) : null}
      </div>

      <div className="flex shrink-0 items-center gap-3 border-t border-white/5 px-4 py-3">
        <Avatar name={user.username} size="sm" online />
        <div className="min-w-0 flex-1">
          <p className="truncate text-sm font-medium text-white">{user.username}</p>
          <p className="truncate text-xs text-slate-500">{user.email ?? "Guest"}</p>
        </div>
        <button
          type="button"
          onClick={onLogout}
          aria-label="Log out"
          title="Log out"
          className="rounded-md p-1.5 text-slate-400 hover:bg-white/10 hover:text-white focus-visible:outline-2 focus-visible:outline-brand-500"
        >
          <LogOutIcon className="h-[18px] w-[18px]" />
        </button>
      </div>
    </div>
  );
}
