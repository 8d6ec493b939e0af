import { flushMicrotasks } from "sluice/testing";

/** Resolves to "pending" if `promise` has not settled after the queued callbacks ran. */
export async function state(promise: Promise<unknown>): Promise<"pending" | "resolved" | "rejected"> {
  let result: "pending" | "resolved" | "rejected" = "pending";
  promise.then(
    () => {
      result = "resolved";
    },
    () => {
      result = "rejected";
    },
  );
  await flushMicrotasks();
  return result;
}
