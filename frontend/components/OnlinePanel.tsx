import type { OnlineUser } from "@/lib/types";
import { Avatar } from "./Avatar";

/** Who is online in the open channel. */
export function OnlinePanel({ users, count, me }: { users: OnlineUser[]; count: number | null; me: string }) {
  const shown = count ?? users.length;
  return (
    <section aria-labelledby="online-heading" className="flex h-full flex-col bg-white">
      <div className="flex h-14 shrink-0 items-center border-b border-slate-200 px-4">
        <h2 id="online-heading" className="text-sm font-semibold text-slate-900">
          Online <span className="font-normal text-slate-500">— {shown}</span>
        </h2>
      </div>
      <ul aria-label="Online users" className="min-h-0 flex-1 space-y-0.5 overflow-y-auto p-2">
        {users.map((u) => (
          <li key={u.userId} className="flex items-center gap-2.5 rounded-md px-2 py-1.5">
            <Avatar name={u.username} size="sm" online />
            <span className="truncate text-sm text-slate-700">
              {u.username}
              {u.userId === me ? <span className="text-slate-400"> (you)</span> : null}
            </span>
          </li>
        ))}
        {users.length === 0 ? <li className="px-2 py-1.5 text-sm text-slate-400">Nobody here yet</li> : null}
      </ul>
    </section>
  );
}
