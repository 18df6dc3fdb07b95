"use client";

import { useEffect, useRef } from "react";

/**
 * A ref for a native <dialog> that is shown as a modal while `open` is true and closed
 * otherwise (shared by Dialog and Drawer).
 */
export function useModal(open: boolean) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return ref;
}
