import { avatarColor, initials } from "@/lib/avatar";

const sizes = {
  sm: "h-7 w-7 text-[11px]",
  md: "h-9 w-9 text-xs",
} as const;

/** Initials on a colour that belongs to the name; decorative (the name is always shown too). */
export function Avatar({ name, size = "md", online }: { name: string; size?: keyof typeof sizes; online?: boolean }) {
  return (
    <span className="relative inline-flex shrink-0" aria-hidden="true">
      <span className={`flex items-center justify-center rounded-full font-semibold ${sizes[size]} ${avatarColor(name)}`}>
        {initials(name)}
      </span>
      {online ? <span className="absolute -bottom-0.5 -right-0.5 h-3 w-3 rounded-full bg-emerald-500 ring-2 ring-white" /> : null}
    </span>
  );
}
