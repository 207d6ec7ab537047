// What a conversation's steps decide and report to the rest of the gateway.

/** What the access step decided. */
export interface AccessDecision {
  allowed: boolean;
  reason: string;
  ruleId?: string | null;
  /** Message to send back when blocked with action "reply". */
  reply?: string | null;
}

/** What the conversation actor knows at a terminal state that saves listeners a query. */
export interface TerminalInfo {
  /** The row came fresh from this process's ingest, so this is its first terminal state ever. */
  firstTerminal: boolean;
  /** Platform id of reply part 0 when it was sent in this run; undefined when not known here. */
  firstPartId?: string;
}
