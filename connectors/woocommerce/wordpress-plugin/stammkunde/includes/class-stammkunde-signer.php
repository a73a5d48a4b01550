<?php
/**
 * Signs the plugin's server-to-server requests to the Stammkunde app.
 *
 * The app checks the same bytes (`verify_plugin_request` in connectors/woocommerce/webhooks.py of the app's repository):
 *
 *     canonical = "stammkunde-v1\n" METHOD "\n" PATH "\n" TIMESTAMP "\n" NONCE "\n" hex(sha256(BODY))
 *     signature = base64(HMAC-SHA256(per-shop secret, canonical))
 *
 * PATH is the request path with its query string exactly as sent; TIMESTAMP is Unix seconds
 * (the app refuses it outside a 5-minute window) and NONCE a fresh random value that the app
 * accepts once.
 *
 * @package Stammkunde
 */

defined( 'ABSPATH' ) || exit;

/**
 * HMAC-SHA256 request signing (no WordPress calls, so it is tested on its own).
 */
class Stammkunde_Signer {

	const VERSION = 'stammkunde-v1';

	const HEADER_SHOP      = 'X-Stammkunde-Shop';
	const HEADER_TIMESTAMP = 'X-Stammkunde-Timestamp';
	const HEADER_NONCE     = 'X-Stammkunde-Nonce';
	const HEADER_SIGNATURE = 'X-Stammkunde-Signature';

	/**
	 * The string that is signed.
	 *
	 * @param string $method    HTTP method, any case.
	 * @param string $path      Path and query string as sent, e.g. "/api/woocommerce/v1/customers/42?lang=de".
	 * @param int    $timestamp Unix seconds.
	 * @param string $nonce     A value used once.
	 * @param string $body      The raw request body ("" for none).
	 * @return string
	 */
	public static function canonical( $method, $path, $timestamp, $nonce, $body ) {
		return implode(
			"\n",
			array(
				self::VERSION,
				strtoupper( $method ),
				$path,
				(string) (int) $timestamp,
				$nonce,
				hash( 'sha256', $body ),
			)
		);
	}

	/**
	 * Base64 HMAC-SHA256 of the canonical string.
	 *
	 * @param string $secret    The shop's shared secret.
	 * @param string $method    HTTP method.
	 * @param string $path      Path and query string.
	 * @param int    $timestamp Unix seconds.
	 * @param string $nonce     A value used once.
	 * @param string $body      Raw body.
	 * @return string
	 */
	public static function sign( $secret, $method, $path, $timestamp, $nonce, $body ) {
		return base64_encode( hash_hmac( 'sha256', self::canonical( $method, $path, $timestamp, $nonce, $body ), $secret, true ) ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_encode
	}

	/**
	 * A fresh nonce: 16 random bytes as hex.
	 *
	 * @return string
	 */
	public static function nonce() {
		return bin2hex( random_bytes( 16 ) );
	}

	/**
	 * The headers of one signed request.
	 *
	 * @param string   $shop_id   The shop's id in the app.
	 * @param string   $secret    The shop's shared secret.
	 * @param string   $method    HTTP method.
	 * @param string   $path      Path and query string.
	 * @param string   $body      Raw body.
	 * @param int|null $timestamp Unix seconds (now when null).
	 * @param string   $nonce     Nonce (fresh when null).
	 * @return array<string,string>
	 */
	public static function headers( $shop_id, $secret, $method, $path, $body, $timestamp = null, $nonce = null ) {
		$timestamp = null === $timestamp ? time() : (int) $timestamp;
		$nonce     = null === $nonce ? self::nonce() : $nonce;
		return array(
			self::HEADER_SHOP      => (string) $shop_id,
			self::HEADER_TIMESTAMP => (string) $timestamp,
			self::HEADER_NONCE     => $nonce,
			self::HEADER_SIGNATURE => self::sign( $secret, $method, $path, $timestamp, $nonce, $body ),
		);
	}
}
