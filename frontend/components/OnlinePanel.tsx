import type { OnlineUser } from "@/lib/types";
import { Avatar } from "./Avatar";
import { MessageIcon } from "./icons";

/** Who is online in the open channel, each (but oneself) a direct message away. */
export function OnlinePanel({
  users,
  count,
  me,
  onMessage,
}: {
  users: OnlineUser[];
  count: number | null;
  me: string;
  onMessage: (username: string) => void;
}) {
  const shown = count ?? users.length;
  return (
    <section aria-labelledby="online-heading" className="flex h-full flex-col bg-white">
      <div className="flex h-14 shrink-0 items-center border-b border-slate-200 px-4">
        <h2 id="online-heading" className="text-sm font-semibold text-slate-900">
          In this channel <span className="font-normal text-slate-500">— {shown} online</span>
        </h2>
      </div>
      <ul aria-label="Online users" className="min-h-0 flex-1 space-y-0.5 overflow-y-auto p-2">
        {users.map((u) => (
          <li key={u.userId} className="group flex items-center gap-2.5 rounded-md px-2 py-1.5 hover:bg-slate-50">
            <Avatar name={u.username} size="sm" online />
            <span className="min-w-0 flex-1 truncate text-sm text-slate-700">
              {u.username}
              {u.userId === me ? <span className="text-slate-400"> (you)</span> : null}
            </span>
            {u.userId === me ? null : (
              <button
                type="button"
                onClick={() => onMessage(u.username)}
                aria-label={`Message ${u.username}`}
                title={`Message ${u.username}`}
                className="shrink-0 rounded-md p-1 text-slate-400 hover:bg-slate-200 hover:text-slate-700 focus-visible:outline-2 focus-visible:outline-brand-600"
              >
                <MessageIcon className="h-4 w-4" />
              </button>
            )}
          </li>
        ))}
        {users.length === 0 ? <li className="px-2 py-1.5 text-sm text-slate-400">Nobody here yet</li> : null}
      </ul>
    </section>
  );
}
