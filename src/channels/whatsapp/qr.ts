// Renders the pairing string Baileys emits as a PNG data URL for the QR endpoints.
import QRCode from 'qrcode';

export async function qrToPngDataUrl(qr: string): Promise<string> {
  // Medium error correction and a 4-module quiet zone: what phone scanners read most reliably.
  return QRCode.toDataURL(qr, { type: 'image/png', errorCorrectionLevel: 'M', margin: 4, scale: 6 });
}
