<?php
/**
 * Points on product and cart pages, rewards applied in the (classic) cart, and the referral
 * parameter that puts a friend's code on the visitor's cart.
 *
 * A redeemed reward's code is created in the store by the app's job (points first, code by
 * job), usually within seconds. Until the coupon exists here, the code waits in the
 * WooCommerce session and is applied as soon as it does.
 *
 * @package Stammkunde
 */

defined( 'ABSPATH' ) || exit;

/**
 * Product page, cart page and the session's pending codes.
 */
class Stammkunde_Cart {

	const REFERRAL_PARAM  = 'sk_ref';
	const SESSION_PENDING = 'stammkunde_pending_code';
	const SESSION_FRIEND  = 'stammkunde_referral_code';
	const APPLY_ACTION    = 'stammkunde_apply';
	const PENDING_SECONDS = 600;
	const POINTS_CACHE    = 300;
	const MAX_LINES       = 250; // The most lines the app weighs one by one.

	/**
	 * Hook the product and cart pages and the session work.
	 */
	public function register() {
		add_action( 'woocommerce_single_product_summary', array( $this, 'render_product_points' ), 25 );
		add_action( 'woocommerce_cart_totals_after_order_total', array( $this, 'render_cart_points' ) );
		add_action( 'woocommerce_after_cart_table', array( $this, 'render_rewards' ) );
		add_action( 'woocommerce_before_cart', array( $this, 'render_pending' ) );
		add_action( 'wp_loaded', array( $this, 'handle_request' ), 20 );
	}

	/**
	 * The points an amount earns for the current visitor (cached for five minutes per visitor
	 * and amount; null when the app cannot be asked).
	 *
	 * @param array $amounts See Stammkunde_Client::cart_points.
	 * @return int|null
	 */
	public function points_for( array $amounts ) {
		$estimate = $this->estimate_for( $amounts );
		return null === $estimate ? null : (int) $estimate['points'];
	}

	/**
	 * The points an amount earns and what they are worth (see Stammkunde_Client::cart_estimate),
	 * cached like points_for (per visitor, amount and language).
	 *
	 * @param array $amounts See Stammkunde_Client::cart_points.
	 * @return array|null
	 */
	public function estimate_for( array $amounts ) {
		$user_id = get_current_user_id();
		$key     = 'stammkunde_est_' . md5( wp_json_encode( array( $user_id, $amounts, Stammkunde_Format::language() ) ) );
		$cached  = get_transient( $key );
		if ( is_array( $cached ) ) {
			return $cached;
		}
		$estimate = Stammkunde_Plugin::instance()->client()->cart_estimate( $user_id, $amounts );
		if ( null !== $estimate ) {
			set_transient( $key, $estimate, self::POINTS_CACHE );
		}
		return $estimate;
	}

	/**
	 * The amounts of the current cart, as the app reads an order: contents after discounts,
	 * with tax when the shop's prices include tax.
	 *
	 * @return array|null Null without a cart.
	 */
	public static function cart_amounts() {
		$cart = function_exists( 'WC' ) ? WC()->cart : null;
		if ( ! $cart ) {
			return null;
		}
		$included = wc_prices_include_tax();
		$tax      = (float) $cart->get_cart_contents_tax();
		$amounts  = self::amounts( (float) $cart->get_cart_contents_total() + ( $included ? $tax : 0.0 ), $included ? $tax : 0.0 );
		$lines    = self::cart_lines( $cart, $included );
		if ( array() !== $lines ) {
			$amounts['lines'] = $lines;
		}
		return $amounts;
	}

	/**
	 * The cart's lines as the app reads an order's, so the program's product rules weigh each:
	 * product and variation ids, the line total after discounts (with its tax when the shop's
	 * prices include tax) and that tax. None for a cart longer than the app takes (it then
	 * earns by its total, as before).
	 *
	 * @param WC_Cart $cart     The cart.
	 * @param bool    $included Whether prices include tax.
	 * @return array
	 */
	public static function cart_lines( $cart, $included ) {
		$lines = array();
		foreach ( (array) $cart->get_cart() as $item ) {
			$product_id = isset( $item['product_id'] ) ? (int) $item['product_id'] : 0;
			$line_tax   = $included ? max( 0.0, (float) ( $item['line_tax'] ?? 0 ) ) : 0.0;
			$amount     = max( 0.0, (float) ( $item['line_total'] ?? 0 ) + $line_tax );
			$lines[]    = array(
				'product_id' => $product_id > 0 ? (string) $product_id : null,
				'variant_id' => ! empty( $item['variation_id'] ) ? (string) (int) $item['variation_id'] : null,
				'amount'     => number_format( $amount, 2, '.', '' ),
				'tax'        => number_format( min( $amount, $line_tax ), 2, '.', '' ),
			);
		}
		return count( $lines ) <= self::MAX_LINES ? $lines : array();
	}

	/**
	 * The amounts of one unit of a product at its shown price.
	 *
	 * @param WC_Product $product The product.
	 * @return array
	 */
	public static function product_amounts( $product ) {
		if ( wc_prices_include_tax() ) {
			$with_tax = (float) wc_get_price_including_tax( $product );
			return self::amounts( $with_tax, $with_tax - (float) wc_get_price_excluding_tax( $product ) );
		}
		return self::amounts( (float) wc_get_price_excluding_tax( $product ), 0.0 );
	}

	/**
	 * Decimal strings in the shop's currency.
	 *
	 * @param float $subtotal Amount that earns (see cart_amounts).
	 * @param float $tax      The tax included in it.
	 * @return array
	 */
	private static function amounts( $subtotal, $tax ) {
		$subtotal = max( 0.0, $subtotal );
		return array(
			'currency' => get_woocommerce_currency(),
			'subtotal' => number_format( $subtotal, 2, '.', '' ),
			'tax'      => number_format( min( $subtotal, max( 0.0, $tax ) ), 2, '.', '' ),
		);
	}

	/**
	 * "Earn N points with this product" under the price.
	 */
	public function render_product_points() {
		global $product;
		if ( ! is_object( $product ) || ! is_callable( array( $product, 'get_price' ) ) || '' === (string) $product->get_price() ) {
			return;
		}
		$points = $this->points_for( self::product_amounts( $product ) );
		if ( null === $points || $points <= 0 ) {
			return;
		}
		/* translators: %s: "12 points" */
		echo '<p class="stammkunde-earn stammkunde-earn-product">' . esc_html( sprintf( __( 'Earn %s with this product.', 'stammkunde' ), Stammkunde_Format::points( $points ) ) ) . '</p>';
	}

	/**
	 * A row under the cart total: "You earn N points with this cart".
	 */
	public function render_cart_points() {
		$amounts  = self::cart_amounts();
		$estimate = null === $amounts ? null : $this->estimate_for( $amounts );
		if ( null === $estimate || $estimate['points'] <= 0 ) {
			return;
		}
		echo '<tr class="stammkunde-earn stammkunde-earn-cart"><th>' . esc_html__( 'Points', 'stammkunde' ) . '</th><td>';
		if ( ! empty( $estimate['estimate'] ) ) {
			/* translators: %s: "52 points" (a product rule reads what the app has not looked up yet) */
			echo esc_html( sprintf( __( 'You earn about %s with this cart.', 'stammkunde' ), Stammkunde_Format::points( $estimate['points'] ) ) );
		} else {
			/* translators: %s: "52 points" */
			echo esc_html( sprintf( __( 'You earn %s with this cart.', 'stammkunde' ), Stammkunde_Format::points( $estimate['points'] ) ) );
		}
		if ( null !== $estimate['value_text'] ) {
			/* translators: %s: "52 points ≈ €0.52" */
			echo ' <span class="stammkunde-point-value">' . esc_html( sprintf( __( '(%s)', 'stammkunde' ), $estimate['value_text'] ) ) . '</span>';
		}
		echo '</td></tr>';
	}

	/**
	 * Below the cart table: the member's usable codes (apply) and affordable rewards (redeem
	 * and apply in one click).
	 */
	public function render_rewards() {
		$user_id = get_current_user_id();
		if ( $user_id <= 0 ) {
			return;
		}
		$view = Stammkunde_Plugin::instance()->client()->member( $user_id, Stammkunde_Format::language() );
		if ( ! is_array( $view ) || ! empty( $view['banned'] ) ) {
			return;
		}
		$codes   = self::usable_codes( $view );
		$rewards = isset( $view['affordable'] ) && is_array( $view['affordable'] ) ? $view['affordable'] : array();
		if ( ! $codes && ! $rewards ) {
			return;
		}
		$balance = (int) ( $view['balance']['available'] ?? 0 );
		echo '<div class="stammkunde-cart-rewards"><h3>' . esc_html__( 'Your rewards', 'stammkunde' ) . '</h3>';
		/* translators: %s: "1,200 points" */
		echo '<p>' . esc_html( sprintf( __( 'You have %s.', 'stammkunde' ), Stammkunde_Format::points( $balance ) ) );
		if ( ! empty( $view['available_value_text'] ) ) {
			echo ' <span class="stammkunde-point-value">' . esc_html( sprintf( __( '(%s)', 'stammkunde' ), (string) $view['available_value_text'] ) ) . '</span>';
		}
		echo '</p><ul>';
		$applied = array_map( 'strtolower', WC()->cart ? WC()->cart->get_applied_coupons() : array() );
		foreach ( $codes as $row ) {
			if ( in_array( strtolower( $row['code'] ), $applied, true ) ) {
				continue;
			}
			echo '<li><form method="post" class="stammkunde-apply" action="' . esc_url( wc_get_cart_url() ) . '">';
			wp_nonce_field( self::APPLY_ACTION, '_stammkunde_apply_nonce' );
			echo '<input type="hidden" name="stammkunde_code" value="' . esc_attr( $row['code'] ) . '">';
			echo '<span class="stammkunde-reward">' . esc_html( Stammkunde_Format::code_label( $row ) ) . '</span> <code>' . esc_html( $row['code'] ) . '</code> ';
			echo '<button type="submit" class="button">' . esc_html__( 'Apply', 'stammkunde' ) . '</button></form></li>';
		}
		foreach ( $rewards as $reward ) {
			echo '<li>';
			Stammkunde_Account::redeem_form( (string) $reward['name'], (int) $reward['points'], wc_get_cart_url(), true );
			echo '</li>';
		}
		echo '</ul></div>';
	}

	/**
	 * The member's codes that can be used in the shop now.
	 *
	 * @param array $view The member view.
	 * @return array
	 */
	public static function usable_codes( array $view ) {
		$usable = array();
		foreach ( isset( $view['codes'] ) && is_array( $view['codes'] ) ? $view['codes'] : array() as $row ) {
			if ( 'usable' === ( $row['state'] ?? '' ) && ! empty( $row['code'] ) ) {
				$usable[] = $row;
			}
		}
		return $usable;
	}

	/**
	 * While a redeemed code is still being created, say so on the cart page and look again in
	 * a few seconds (at most ten times).
	 */
	public function render_pending() {
		$pending = $this->pending();
		if ( null === $pending || $pending['reloads'] >= 10 ) {
			return;
		}
		$pending['reloads']++;
		WC()->session->set( self::SESSION_PENDING, $pending );
		echo '<p class="stammkunde-pending-code" role="status">' . esc_html__( 'Your code is being created and will be applied to your cart in a moment.', 'stammkunde' ) . '</p>';
		wp_print_inline_script_tag( 'setTimeout(function(){window.location.reload();},3000);' );
	}

	/**
	 * Every front-end request: an "apply" form, the referral parameter, and waiting codes.
	 */
	public function handle_request() {
		if ( is_admin() || ! function_exists( 'WC' ) || ! WC()->session || ! WC()->cart ) {
			return;
		}
		if ( isset( $_POST['_stammkunde_apply_nonce'], $_POST['stammkunde_code'] ) ) {
			$this->handle_apply( sanitize_text_field( wp_unslash( $_POST['_stammkunde_apply_nonce'] ) ), sanitize_text_field( wp_unslash( $_POST['stammkunde_code'] ) ) );
		}
		if ( isset( $_GET[ self::REFERRAL_PARAM ] ) ) { // phpcs:ignore WordPress.Security.NonceVerification.Recommended -- a shared link; it changes only the visitor's own cart.
			$this->capture_referral( sanitize_text_field( wp_unslash( $_GET[ self::REFERRAL_PARAM ] ) ) ); // phpcs:ignore WordPress.Security.NonceVerification.Recommended
		}
		$this->apply_waiting();
	}

	/**
	 * Apply one of the member's own codes (the app's list decides which are theirs).
	 *
	 * @param string $nonce The form's nonce.
	 * @param string $code  The code posted.
	 */
	private function handle_apply( $nonce, $code ) {
		if ( ! is_user_logged_in() || ! wp_verify_nonce( $nonce, self::APPLY_ACTION ) ) {
			wc_add_notice( __( 'The form has expired. Please reload the page and try again.', 'stammkunde' ), 'error' );
			return;
		}
		$row = $this->own_code( $code );
		if ( false === $row ) {
			wc_add_notice( __( 'Rewards cannot be applied right now. Please try again later.', 'stammkunde' ), 'error' );
		} elseif ( null === $row ) {
			wc_add_notice( __( 'This code is not one of your rewards.', 'stammkunde' ), 'error' );
		} else {
			$this->apply_code( $row['code'] );
		}
	}

	/**
	 * The logged-in member's usable code row matching `$code`; null when it is not theirs,
	 * false when the app cannot be asked.
	 *
	 * @param string $code The code.
	 * @return array|null|false
	 */
	public function own_code( $code ) {
		$view = Stammkunde_Plugin::instance()->client()->member( get_current_user_id(), Stammkunde_Format::language() );
		if ( ! is_array( $view ) ) {
			return false;
		}
		foreach ( self::usable_codes( $view ) as $row ) {
			if ( 0 === strcasecmp( $row['code'], $code ) ) {
				return $row;
			}
		}
		return null;
	}

	/**
	 * Apply a code that exists in the shop (WooCommerce says why if it refuses).
	 *
	 * @param string $code The code.
	 * @return bool
	 */
	public function apply_code( $code ) {
		return WC()->cart->has_discount( $code ) || WC()->cart->apply_coupon( $code );
	}

	/**
	 * After a redemption: apply its code if the shop holds it already, else remember the
	 * redemption in the session and apply its code as soon as the app says it exists.
	 *
	 * @param array $redemption The app's answer to the redemption.
	 * @return bool Applied now.
	 */
	public function apply_or_wait( array $redemption ) {
		if ( ! empty( $redemption['code'] ) ) {
			WC()->session->set( self::SESSION_PENDING, null );
			return $this->apply_code( (string) $redemption['code'] );
		}
		if ( 'failed' === ( $redemption['status'] ?? '' ) || empty( $redemption['redemption_id'] ) ) {
			wc_add_notice( __( 'The shop could not create this code; your points were given back.', 'stammkunde' ), 'error' );
			return false;
		}
		WC()->session->set(
			self::SESSION_PENDING,
			array(
				'redemption_id' => (int) $redemption['redemption_id'],
				'until'         => time() + self::PENDING_SECONDS,
				'reloads'       => 0,
			)
		);
		wc_add_notice( __( 'Your code is being created and will be applied to your cart in a moment.', 'stammkunde' ), 'notice' );
		return false;
	}

	/**
	 * The redemption waiting for its code, or null (one waiting too long is dropped).
	 *
	 * @return array|null
	 */
	public function pending() {
		if ( ! function_exists( 'WC' ) || ! WC()->session ) {
			return null;
		}
		$pending = WC()->session->get( self::SESSION_PENDING );
		if ( ! is_array( $pending ) || empty( $pending['redemption_id'] ) ) {
			return null;
		}
		if ( (int) $pending['until'] < time() ) {
			WC()->session->set( self::SESSION_PENDING, null );
			wc_add_notice( __( 'Your code is not ready yet. You find it under My Account → Points as soon as the shop has created it.', 'stammkunde' ), 'notice' );
			return null;
		}
		return $pending;
	}

	/**
	 * Apply what waits in the session: a redeemed code the shop now holds, and a friend's code
	 * once the cart has something in it.
	 *
	 * @return bool Whether anything was applied.
	 */
	public function apply_waiting() {
		$applied = false;
		$pending = $this->pending();
		$user_id = get_current_user_id();
		if ( null !== $pending && $user_id > 0 ) {
			$state = Stammkunde_Plugin::instance()->client()->redemption( $user_id, $pending['redemption_id'], Stammkunde_Format::language() );
			if ( is_array( $state ) && ( ! empty( $state['code'] ) || 'failed' === ( $state['status'] ?? '' ) ) ) {
				WC()->session->set( self::SESSION_PENDING, null );
				$applied = $this->apply_or_wait( $state );
			}
		}
		$friend = WC()->session->get( self::SESSION_FRIEND );
		if ( is_string( $friend ) && '' !== $friend && ! WC()->cart->is_empty() ) {
			WC()->session->set( self::SESSION_FRIEND, null );
			$applied = $this->apply_code( $friend ) || $applied;
		}
		return $applied;
	}

	/**
	 * `?sk_ref=CODE`: if the app says it is a member's referral code that exists in the shop,
	 * keep it in the visitor's session (applied as soon as the cart has items).
	 *
	 * @param string $code The code from the link.
	 */
	public function capture_referral( $code ) {
		if ( WC()->session->get( self::SESSION_FRIEND ) === $code || WC()->cart->has_discount( $code ) ) {
			return;
		}
		$offer = Stammkunde_Plugin::instance()->client()->referral_code( $code, Stammkunde_Format::language() );
		if ( null === $offer || empty( $offer['code'] ) ) {
			wc_add_notice( __( 'This invite link is not valid (any more).', 'stammkunde' ), 'error' );
			return;
		}
		if ( ! WC()->session->has_session() ) {
			WC()->session->set_customer_session_cookie( true );
		}
		WC()->session->set( self::SESSION_FRIEND, (string) $offer['code'] );
		/* translators: %s: what the friend gets, e.g. "10 % off" */
		wc_add_notice( sprintf( __( 'Welcome! Your friend\'s gift (%s) is applied to your cart.', 'stammkunde' ), Stammkunde_Format::offer( $offer ) ), 'success' );
	}
}
