<?php
/**
 * The Cart and Checkout blocks: the plugin's data on the Store API cart
 * (`woocommerce_store_api_register_endpoint_data`, under extensions.stammkunde) and an update
 * callback (`woocommerce_store_api_register_update_callback`, namespace "stammkunde") that the
 * block script calls through `extensionCartUpdate` to apply a code or redeem a reward.
 *
 * @package Stammkunde
 */

defined( 'ABSPATH' ) || exit;

use Automattic\WooCommerce\StoreApi\Exceptions\RouteException;

/**
 * Store API extension and the block script.
 */
class Stammkunde_Blocks {

	const NAMESPACE_ID = 'stammkunde';
	const SCRIPT       = 'stammkunde-blocks';

	/**
	 * Hook the Store API registration and the script.
	 */
	public function register() {
		add_action( 'woocommerce_blocks_loaded', array( $this, 'register_store_api' ) );
		add_action( 'wp_enqueue_scripts', array( $this, 'enqueue' ) );
	}

	/**
	 * Register the cart data and the update callback.
	 */
	public function register_store_api() {
		if ( ! function_exists( 'woocommerce_store_api_register_endpoint_data' ) ) {
			return;
		}
		woocommerce_store_api_register_endpoint_data(
			array(
				'endpoint'        => 'cart', // CartSchema::IDENTIFIER.
				'namespace'       => self::NAMESPACE_ID,
				'data_callback'   => array( $this, 'cart_data' ),
				'schema_callback' => array( $this, 'cart_schema' ),
				'schema_type'     => ARRAY_A,
			)
		);
		woocommerce_store_api_register_update_callback(
			array(
				'namespace' => self::NAMESPACE_ID,
				'callback'  => array( $this, 'update' ),
			)
		);
	}

	/**
	 * The plugin's part of the Store API cart.
	 *
	 * @return array
	 */
	public function cart_data() {
		$plugin  = Stammkunde_Plugin::instance();
		$amounts  = Stammkunde_Cart::cart_amounts();
		$estimate = null === $amounts ? null : $plugin->cart()->estimate_for( $amounts );
		$data     = array(
			'points'    => null === $estimate ? null : (int) $estimate['points'],
			'estimate'  => null !== $estimate && ! empty( $estimate['estimate'] ),
			'logged_in' => is_user_logged_in(),
			'balance'   => null,
			'codes'     => array(),
			'rewards'   => array(),
			'pending'   => null !== $plugin->cart()->pending(),
		);
		$user_id = get_current_user_id();
		if ( $user_id <= 0 ) {
			return $data;
		}
		$view = $plugin->client()->member( $user_id, Stammkunde_Format::language() );
		if ( ! is_array( $view ) || ! empty( $view['banned'] ) ) {
			return $data;
		}
		$data['balance'] = (int) ( $view['balance']['available'] ?? 0 );
		$applied         = array_map( 'strtolower', WC()->cart ? WC()->cart->get_applied_coupons() : array() );
		foreach ( Stammkunde_Cart::usable_codes( $view ) as $row ) {
			if ( ! in_array( strtolower( $row['code'] ), $applied, true ) ) {
				$data['codes'][] = array(
					'code'   => (string) $row['code'],
					'reward' => Stammkunde_Format::code_label( $row ),
				);
			}
		}
		foreach ( isset( $view['affordable'] ) && is_array( $view['affordable'] ) ? $view['affordable'] : array() as $reward ) {
			$data['rewards'][] = array(
				'name'   => (string) $reward['name'],
				'points' => (int) $reward['points'],
			);
		}
		return $data;
	}

	/**
	 * The schema of `cart_data`.
	 *
	 * @return array
	 */
	public function cart_schema() {
		$read_only = array(
			'context'  => array( 'view', 'edit' ),
			'readonly' => true,
		);
		return array(
			'points'    => array( 'description' => __( 'Points this cart earns.', 'stammkunde' ), 'type' => array( 'integer', 'null' ) ) + $read_only,
			'estimate'  => array( 'description' => __( 'Whether the points are an estimate (a product rule reads what is not known yet).', 'stammkunde' ), 'type' => 'boolean' ) + $read_only,
			'logged_in' => array( 'description' => __( 'Whether the customer is logged in.', 'stammkunde' ), 'type' => 'boolean' ) + $read_only,
			'balance'   => array( 'description' => __( 'Points available to the customer.', 'stammkunde' ), 'type' => array( 'integer', 'null' ) ) + $read_only,
			'codes'     => array( 'description' => __( 'The customer\'s reward codes not applied yet.', 'stammkunde' ), 'type' => 'array' ) + $read_only,
			'rewards'   => array( 'description' => __( 'Rewards the customer can redeem now.', 'stammkunde' ), 'type' => 'array' ) + $read_only,
			'pending'   => array( 'description' => __( 'A redeemed code is being created.', 'stammkunde' ), 'type' => 'boolean' ) + $read_only,
		);
	}

	/**
	 * `extensionCartUpdate({namespace: "stammkunde", data: {...}})`: "apply" one of the
	 * member's codes, "redeem" a reward and apply its code, or "check" for a waiting code.
	 *
	 * @param array $data What the script sent.
	 * @throws RouteException When the action cannot be done (the block shows the message).
	 */
	public function update( $data ) {
		$plugin = Stammkunde_Plugin::instance();
		$action = isset( $data['action'] ) ? (string) $data['action'] : '';
		if ( 'check' === $action ) {
			$plugin->cart()->apply_waiting();
			$this->raise_cart_errors();
			return;
		}
		if ( ! is_user_logged_in() ) {
			throw new RouteException( 'stammkunde_login_required', __( 'Please log in to use your points.', 'stammkunde' ), 401 );
		}
		if ( 'apply' === $action ) {
			$row = $plugin->cart()->own_code( isset( $data['code'] ) ? sanitize_text_field( (string) $data['code'] ) : '' );
			if ( false === $row ) {
				throw new RouteException( 'stammkunde_unavailable', __( 'Rewards cannot be applied right now. Please try again later.', 'stammkunde' ), 503 );
			}
			if ( null === $row ) {
				throw new RouteException( 'stammkunde_not_yours', __( 'This code is not one of your rewards.', 'stammkunde' ), 400 );
			}
			$plugin->cart()->apply_code( $row['code'] );
			$this->raise_cart_errors();
			return;
		}
		if ( 'redeem' === $action ) {
			$reward = isset( $data['reward'] ) ? sanitize_text_field( (string) $data['reward'] ) : '';
			$key    = isset( $data['key'] ) ? sanitize_text_field( (string) $data['key'] ) : '';
			$result = $plugin->redeem( get_current_user_id(), $reward, $key );
			if ( null === $result ) {
				throw new RouteException( 'stammkunde_unavailable', __( 'Rewards cannot be redeemed right now. Please try again later.', 'stammkunde' ), 503 );
			}
			if ( empty( $result['ok'] ) ) {
				throw new RouteException( 'stammkunde_refused', '' !== $result['message'] ? $result['message'] : __( 'The reward could not be redeemed. Please try again.', 'stammkunde' ), 409 );
			}
			$plugin->cart()->apply_or_wait( $result['redemption'] );
			$this->raise_cart_errors();
			return;
		}
		throw new RouteException( 'stammkunde_unknown_action', __( 'Unknown action.', 'stammkunde' ), 400 );
	}

	/**
	 * Turn the error notices WooCommerce added while applying a coupon into the block's error
	 * (the Store API does not show classic notices), and drop the waiting-code notice.
	 *
	 * @throws RouteException With WooCommerce's own message when a coupon was refused.
	 */
	private function raise_cart_errors() {
		$errors = wc_get_notices( 'error' );
		wc_clear_notices();
		if ( $errors ) {
			$first = is_array( $errors[0] ) ? $errors[0]['notice'] : $errors[0];
			throw new RouteException( 'stammkunde_coupon_refused', wp_strip_all_tags( (string) $first ), 400 );
		}
	}

	/**
	 * The block script, on pages with the Cart or Checkout block.
	 */
	public function enqueue() {
		if ( ! function_exists( 'has_block' ) || ! ( has_block( 'woocommerce/cart' ) || has_block( 'woocommerce/checkout' ) ) ) {
			return;
		}
		wp_enqueue_script(
			self::SCRIPT,
			plugins_url( 'assets/blocks.js', STAMMKUNDE_FILE ),
			array( 'wc-blocks-checkout', 'wp-plugins', 'wp-element' ),
			STAMMKUNDE_VERSION,
			true
		);
		wp_localize_script(
			self::SCRIPT,
			'stammkundeBlocks',
			array(
				'title'    => __( 'Your rewards', 'stammkunde' ),
				/* translators: %s: a number of points */
				'earn'     => __( 'You earn %s points with this cart.', 'stammkunde' ),
				/* translators: %s: a number of points */
				'earn_about' => __( 'You earn about %s points with this cart.', 'stammkunde' ),
				/* translators: %s: a number of points */
				'balance'  => __( 'You have %s points.', 'stammkunde' ),
				'apply'    => __( 'Apply', 'stammkunde' ),
				'redeem'   => __( 'Redeem and apply', 'stammkunde' ),
				'pending'  => __( 'Your code is being created and will be applied to your cart in a moment.', 'stammkunde' ),
				/* translators: %s: a number of points */
				'cost'     => __( '%s points', 'stammkunde' ),
				'fallback' => __( 'The reward could not be redeemed. Please try again.', 'stammkunde' ),
			)
		);
	}
}
