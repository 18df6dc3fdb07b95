"use client";

import type { Channel, User } from "@/lib/types";
import { Avatar } from "./Avatar";
import { HashIcon, LockIcon, LogOutIcon, Logo, PlusIcon } from "./icons";

/** Channels, the create button and the signed-in user. */
export function Sidebar({
  user,
  channels,
  current,
  joining,
  onSelect,
  onCreate,
  onLogout,
}: {
  user: User;
  channels: Channel[];
  current: string | null;
  joining: string | null;
  onSelect: (name: string) => void;
  onCreate: () => void;
  onLogout: () => void;
}) {
  return (
    <div className="flex h-full flex-col bg-slate-900 text-slate-300">
      <div className="flex h-14 shrink-0 items-center gap-2.5 border-b border-white/5 px-4">
        <Logo className="h-7 w-7" />
        <span className="text-[17px] font-semibold tracking-tight text-white">banter</span>
      </div>

      <nav aria-label="Channels" className="flex min-h-0 flex-1 flex-col px-2 py-4">
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
        <ul className="min-h-0 flex-1 space-y-0.5 overflow-y-auto">
          {channels.map((c) => {
            const active = c.name === current;
            return (
              <li key={c.name}>
                <button
                  type="button"
                  onClick={() => onSelect(c.name)}
                  aria-current={active ? "page" : undefined}
                  title={c.description ?? undefined}
                  className={`group flex w-full items-center gap-2 rounded-md px-2 py-1.5 text-left text-[15px] transition focus-visible:outline-2 focus-visible:outline-brand-500 ${
                    active ? "bg-brand-600 font-medium text-white" : "hover:bg-white/5 hover:text-white"
                  }`}
                >
                  {c.private ? (
                    <LockIcon className={`h-4 w-4 shrink-0 ${active ? "text-indigo-200" : "text-slate-500"}`} />
                  ) : (
                    <HashIcon className={`h-4 w-4 shrink-0 ${active ? "text-indigo-200" : "text-slate-500"}`} />
                  )}
                  <span className="truncate">{c.name}</span>
                  {c.private ? <span className="sr-only"> (private)</span> : null}
                  {joining === c.name ? (
                    <span className="ml-auto h-3 w-3 animate-spin rounded-full border-2 border-slate-500 border-t-white" aria-hidden="true" />
                  ) : null}
                </button>
              </li>
            );
          })}
          {channels.length === 0 ? <li className="px-2 py-1.5 text-sm text-slate-500">No channels yet</li> : null}
        </ul>
      </nav>

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
