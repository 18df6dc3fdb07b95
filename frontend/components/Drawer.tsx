"use client";

import { type ReactNode } from "react";
import { useModal } from "./useModal";
import { CloseIcon } from "./icons";

/**
 * A side panel for small screens, on the native <dialog> element (focus stays inside,
 * Escape and a tap outside close it).
 */
export function Drawer({
  side,
  open,
  onClose,
  label,
  children,
}: {
  side: "left" | "right";
  open: boolean;
  onClose: () => void;
  label: string;
  children: ReactNode;
}) {
  const ref = useModal(open);

  return (
    <dialog
      ref={ref}
      aria-label={label}
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
      onClick={(e) => {
        if (e.target === e.currentTarget) onClose();
      }}
      className={`fixed inset-y-0 m-0 h-dvh max-h-none w-72 max-w-[85vw] bg-transparent p-0 ${
        side === "left" ? "left-0 right-auto" : "left-auto right-0"
      }`}
    >
      {open ? (
        <div className="relative h-full shadow-2xl">
          {children}
          <button
            type="button"
            onClick={onClose}
            aria-label={`Close ${label.toLowerCase()}`}
            className={`absolute top-3 rounded-lg p-1.5 focus-visible:outline-2 focus-visible:outline-brand-500 ${
              side === "left" ? "right-3 text-slate-400 hover:bg-white/10 hover:text-white" : "right-3 text-slate-400 hover:bg-slate-100 hover:text-slate-700"
            }`}
          >
            <CloseIcon className="h-5 w-5" />
          </button>
        </div>
      ) : null}
    </dialog>
  );
}
