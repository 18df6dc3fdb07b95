import type { ConnectionStatus } from "@/lib/chat";

const look: Record<ConnectionStatus, { label: string; dot: string; text: string }> = {
  connected: { label: "Connected", dot: "bg-emerald-500", text: "text-emerald-700 bg-emerald-50 ring-emerald-200" },
  connecting: { label: "Connecting…", dot: "bg-amber-500 typing-dot", text: "text-amber-800 bg-amber-50 ring-amber-200" },
  reconnecting: { label: "Reconnecting…", dot: "bg-amber-500 typing-dot", text: "text-amber-800 bg-amber-50 ring-amber-200" },
  offline: { label: "Offline", dot: "bg-rose-500", text: "text-rose-700 bg-rose-50 ring-rose-200" },
};

/** The connection's state, always visible in the channel header. */
export function ConnectionBadge({ status }: { status: ConnectionStatus }) {
  const l = look[status];
  return (
    <span
      role="status"
      aria-label={`Connection: ${l.label.replace("…", "")}`}
      className={`inline-flex shrink-0 items-center gap-1.5 rounded-full px-2.5 py-1 text-xs font-medium ring-1 ring-inset ${l.text}`}
    >
      <span className={`h-1.5 w-1.5 rounded-full ${l.dot}`} aria-hidden="true" />
      {l.label}
    </span>
  );
}
