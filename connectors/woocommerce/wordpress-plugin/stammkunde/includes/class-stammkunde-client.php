<?php
/**
 * Signed server-to-server calls to the Stammkunde app.
 *
 * Every call names the customer only by the id WordPress gives the logged-in user; nothing the
 * browser sends is passed on as an identity. A call that fails (app unreachable, refused
 * signature, a garbled answer) returns null and writes one line to the PHP error log saying
 * why, without the secret or any personal data. After a failure the app is left alone for
 * a minute, so a store whose app is down does not wait for a timeout on every page.
 *
 * @package Stammkunde
 */

defined( 'ABSPATH' ) || exit;

/**
 * The app's API for this plugin, under /api/woocommerce/v1.
 */
class Stammkunde_Client {

	const PREFIX        = '/api/woocommerce/v1';
	const TIMEOUT       = 3;
	const PAUSE_OPTION  = 'stammkunde_app_paused';
	const PAUSE_SECONDS = 60;

	/**
	 * Answers already fetched in this PHP request, by method and path.
	 *
	 * @var array<string,array|null>
	 */
	private $memo = array();

	/**
	 * Why the last call failed ("" when it did not).
	 *
	 * @var string
	 */
	public $last_error = '';

	/**
	 * GET /ping: whether the app accepts this store's signature.
	 *
	 * @return array|null The app's answer ({"shop": id}) or null.
	 */
	public function ping() {
		$answer = $this->call( 'GET', '/ping', null, true );
		return ( null !== $answer && 200 === $answer['status'] ) ? $answer['data'] : null;
	}

	/**
	 * GET /program: what the program offers, for visitors who are not members (yet).
	 *
	 * @param string $language "de" or "en".
	 * @return array|null
	 */
	public function program( $language ) {
		$answer = $this->call( 'GET', '/program?' . http_build_query( array( 'lang' => $language ) ) );
		return ( null !== $answer && 200 === $answer['status'] ) ? $answer['data'] : null;
	}

	/**
	 * GET /customers/{id}: the member's balance, tier, rewards, codes, history and referral.
	 *
	 * @param int    $customer_id The WordPress user id of the logged-in customer.
	 * @param string $language    "de" or "en".
	 * @return array|false|null The member view; false when the app does not know the customer
	 *                          yet (no points so far); null when the app cannot be asked.
	 */
	public function member( $customer_id, $language ) {
		$answer = $this->call( 'GET', '/customers/' . (int) $customer_id . '?' . http_build_query( array( 'lang' => $language ) ) );
		if ( null === $answer ) {
			return null;
		}
		if ( 404 === $answer['status'] ) {
			return false;
		}
		return 200 === $answer['status'] ? $answer['data'] : $this->unexpected( $answer['status'], 'member' );
	}

	/**
	 * POST /customers/{id}/redemptions: redeem a reward, once per idempotency key.
	 *
	 * @param int    $customer_id The WordPress user id of the logged-in customer.
	 * @param string $reward      The reward's name.
	 * @param string $key         The form's idempotency key (a UUID).
	 * @param string $language    "de" or "en".
	 * @return array|null array("ok" => true, "redemption" => {"redemption_id", "status", "code"
	 *                    (null until the shop holds it), "available", ...}) or array("ok" => false,
	 *                    "message" => why, in the customer's language); null when the app
	 *                    cannot be asked.
	 */
	public function redeem( $customer_id, $reward, $key, $language ) {
		$this->forget( '/customers/' . (int) $customer_id );
		$answer = $this->call(
			'POST',
			'/customers/' . (int) $customer_id . '/redemptions?' . http_build_query( array( 'lang' => $language ) ),
			array(
				'reward' => (string) $reward,
				'key'    => (string) $key,
			)
		);
		if ( null === $answer ) {
			return null;
		}
		if ( in_array( $answer['status'], array( 200, 201 ), true ) ) {
			return array(
				'ok'         => true,
				'redemption' => $answer['data'],
			);
		}
		if ( in_array( $answer['status'], array( 404, 409, 422 ), true ) ) {
			return array(
				'ok'      => false,
				'message' => isset( $answer['data']['message'] ) ? (string) $answer['data']['message'] : '',
			);
		}
		return $this->unexpected( $answer['status'], 'redeem' );
	}

	/**
	 * GET /customers/{id}/redemptions/{redemption id}: a redemption as it stands now (its code
	 * once the shop holds it).
	 *
	 * @param int    $customer_id   The WordPress user id of the logged-in customer.
	 * @param int    $redemption_id The app's redemption id.
	 * @param string $language      "de" or "en".
	 * @return array|null Null when it is not theirs or the app cannot be asked.
	 */
	public function redemption( $customer_id, $redemption_id, $language ) {
		$answer = $this->call( 'GET', '/customers/' . (int) $customer_id . '/redemptions/' . (int) $redemption_id . '?' . http_build_query( array( 'lang' => $language ) ) );
		if ( null === $answer || 404 === $answer['status'] ) {
			return null;
		}
		return 200 === $answer['status'] ? $answer['data'] : $this->unexpected( $answer['status'], 'redemption' );
	}

	/**
	 * POST /cart-points: the points an amount would earn this customer (or a visitor).
	 *
	 * @param int   $customer_id WordPress user id, 0 for a visitor.
	 * @param array $amounts     "currency", "subtotal" (the merchandise after discounts, with
	 *                           tax when the shop's prices include tax) and "tax" (the tax in
	 *                           it, "0.00" when prices exclude tax), as the app reads an order;
	 *                           optionally "lines" (Stammkunde_Cart::cart_lines), so the
	 *                           program's product rules weigh each line.
	 * @return int|null
	 */
	public function cart_points( $customer_id, array $amounts ) {
		$answer = $this->cart_estimate( $customer_id, $amounts );
		return null === $answer ? null : $answer['points'];
	}

	/**
	 * POST /cart-points: the points a cart would earn, and what they are worth ("52 Punkte ≈
	 * 0,52 €", in the visitor's language; null when the program gives a point no value).
	 *
	 * @param int   $customer_id WordPress user id (0 for a visitor).
	 * @param array $amounts     See cart_points.
	 * @return array|null array( 'points' => int, 'estimate' => bool, 'value_text' => string|null ), or
	 *                    null when the app cannot be asked; "estimate": a product rule reads what
	 *                    the app has not looked up yet of a line's product (say "about").
	 */
	public function cart_estimate( $customer_id, array $amounts ) {
		$body = array(
			'customer_id' => $customer_id > 0 ? (string) (int) $customer_id : null,
			'currency'    => (string) $amounts['currency'],
			'subtotal'    => (string) $amounts['subtotal'],
			'tax'         => (string) $amounts['tax'],
		);
		if ( ! empty( $amounts['lines'] ) ) {
			$body['lines'] = array_values( $amounts['lines'] );
		}
		$answer = $this->call(
			'POST',
			'/cart-points?' . http_build_query( array( 'lang' => Stammkunde_Format::language() ) ),
			$body
		);
		if ( null === $answer ) {
			return null;
		}
		if ( 200 !== $answer['status'] || ! isset( $answer['data']['points'] ) ) {
			return $this->unexpected( $answer['status'], 'cart points' );
		}
		$text = $answer['data']['value_text'] ?? null;
		return array(
			'points'     => (int) $answer['data']['points'],
			'estimate'   => true === ( $answer['data']['estimate'] ?? false ),
			'value_text' => is_string( $text ) && '' !== $text ? $text : null,
		);
	}

	/**
	 * GET /referral-codes/{code}: whether a friend's code is a member's referral code that the
	 * shop has created, and what it gives.
	 *
	 * @param string $code     Code from the link (letters, digits, "-" and "_" only).
	 * @param string $language "de" or "en".
	 * @return array|null The code's offer, or null when it is not one (or the app cannot be asked).
	 */
	public function referral_code( $code, $language ) {
		if ( 1 !== preg_match( '/^[A-Za-z0-9_-]{1,64}$/', (string) $code ) ) {
			return null;
		}
		$answer = $this->call( 'GET', '/referral-codes/' . rawurlencode( $code ) . '?' . http_build_query( array( 'lang' => $language ) ) );
		if ( null === $answer || 404 === $answer['status'] ) {
			return null;
		}
		return 200 === $answer['status'] ? $answer['data'] : $this->unexpected( $answer['status'], 'referral code' );
	}

	/**
	 * One signed call; GET answers are kept for the rest of the PHP request.
	 *
	 * @param string     $method    GET or POST.
	 * @param string     $path      Path under the prefix, with its query string.
	 * @param array|null $payload   JSON body for POST.
	 * @param bool       $force     Call even while paused after a failure (the settings page).
	 * @return array|null array("status" => int, "data" => array), or null after logging why.
	 */
	public function call( $method, $path, $payload = null, $force = false ) {
		$this->last_error = '';
		if ( ! Stammkunde_Settings::is_configured() ) {
			return $this->fail( 'not configured (app address, shop id and secret are needed)', false, false );
		}
		$memo_key = $method . ' ' . $path;
		if ( 'GET' === $method && array_key_exists( $memo_key, $this->memo ) ) {
			return $this->memo[ $memo_key ];
		}
		if ( ! $force && (int) get_option( self::PAUSE_OPTION, 0 ) > time() ) {
			return $this->fail( 'not asked: the app failed less than a minute ago', false, false );
		}
		$full_path = (string) wp_parse_url( Stammkunde_Settings::app_url(), PHP_URL_PATH ) . self::PREFIX . $path;
		$body      = null === $payload ? '' : (string) wp_json_encode( $payload );
		$headers   = Stammkunde_Signer::headers( Stammkunde_Settings::shop_id(), Stammkunde_Settings::secret(), $method, $full_path, $body );
		$headers['Accept'] = 'application/json';
		if ( '' !== $body ) {
			$headers['Content-Type'] = 'application/json';
		}
		$response = wp_remote_request(
			Stammkunde_Settings::app_url() . self::PREFIX . $path,
			array(
				'method'      => $method,
				'headers'     => $headers,
				'body'        => '' === $body ? null : $body,
				'timeout'     => self::TIMEOUT,
				'redirection' => 0,
			)
		);
		if ( is_wp_error( $response ) ) {
			return $this->fail( 'app unreachable: ' . $response->get_error_message(), true );
		}
		$status = (int) wp_remote_retrieve_response_code( $response );
		if ( 401 === $status || 403 === $status ) {
			return $this->fail( 'the app refused the signature (HTTP ' . $status . '): check the shop id and the shared secret, and that the store clock is right', true );
		}
		if ( $status >= 500 || $status < 200 || ( $status >= 300 && $status < 400 ) ) {
			return $this->fail( 'the app answered HTTP ' . $status, true );
		}
		$data = json_decode( (string) wp_remote_retrieve_body( $response ), true );
		if ( ! is_array( $data ) ) {
			return $this->fail( 'the app answered HTTP ' . $status . ' without a JSON object', true );
		}
		$answer = array(
			'status' => $status,
			'data'   => $data,
		);
		if ( 'GET' === $method ) {
			$this->memo[ $memo_key ] = $answer;
		}
		return $answer;
	}

	/**
	 * Drop the kept answers whose path starts with `$prefix` (after a change).
	 *
	 * @param string $prefix Path prefix under the API prefix.
	 */
	public function forget( $prefix ) {
		foreach ( array_keys( $this->memo ) as $key ) {
			if ( 0 === strpos( substr( $key, strpos( $key, ' ' ) + 1 ), $prefix ) ) {
				unset( $this->memo[ $key ] );
			}
		}
	}

	/**
	 * Log why a call failed and, for a failure of the app, pause calls for a minute.
	 *
	 * @param string $reason Why (no secrets, no personal data).
	 * @param bool   $pause  Pause further calls.
	 * @param bool   $log    Write it to the error log (not for "not configured" and "paused",
	 *                       which would repeat on every page; the settings page shows them).
	 * @return null
	 */
	private function fail( $reason, $pause, $log = true ) {
		$this->last_error = $reason;
		if ( $pause ) {
			update_option( self::PAUSE_OPTION, time() + self::PAUSE_SECONDS, false );
		}
		if ( $log ) {
			error_log( 'Stammkunde: ' . $reason ); // phpcs:ignore WordPress.PHP.DevelopmentFunctions.error_log_error_log
		}
		return null;
	}

	/**
	 * Log an answer the plugin does not expect for `$what`.
	 *
	 * @param int    $status HTTP status.
	 * @param string $what   Which call.
	 * @return null
	 */
	private function unexpected( $status, $what ) {
		return $this->fail( 'unexpected answer to ' . $what . ': HTTP ' . $status, false );
	}
}
