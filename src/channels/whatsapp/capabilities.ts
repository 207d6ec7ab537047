// What WhatsApp (Baileys) can do, apart from the adapter: the registry reads it at start, and the adapter
// (with its client library) is loaded only when the first instance of the kind starts.
import type { ChannelCapabilities } from '../types.ts';

export const WHATSAPP_CAPABILITIES: ChannelCapabilities = {
  maxText: 4000,
  edit: false,
  typing: true,
  threads: false,
  reactions: true,
  media: ['image', 'video', 'audio', 'document', 'sticker'],
  pairing: 'qr+code',
};
