// Mentions as the server resolved them (docs/protocol.md, *Mentions*): a message carries
// the user ids it mentions and whether it mentions everyone, so the page never parses
// `@` itself to decide who was meant.

/** Whether `msg` mentions the reader (`me`: the reader's user id), by name or everyone. */
export function mentionsMe(msg, me) {
  if (msg.deleted || me == null || msg.user_id === me) return false;
  return Boolean(msg.mention_all) || (Array.isArray(msg.mentions) && msg.mentions.includes(me));
}
